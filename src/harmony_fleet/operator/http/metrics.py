"""``/metrics``: the operator in Prometheus' text format (``prometheus-client``).

Gauges and counters the operator already keeps (the registry's counts, the security events,
the coordinator's) are read **on scrape** by :class:`FleetCollector`: nothing is added to the
heartbeat path, and a scrape costs one pass over the devices. What the operator does not count
by itself (upgrade outcomes, rollback reasons, time to commit and to roll back) is observed from
the dashboard's timeline, once per phase change. Each :class:`Metrics` has its own
``CollectorRegistry`` (two operators in one process, as in the tests, do not collide).

Names (all prefixed ``fleet_``): ``devices{state}``, ``devices_by_version{version}``,
``heartbeats_ingested_total``, ``heartbeats_rejected_total``, ``registry_writes_total``,
``registry_write_errors_total``, ``upgrades{phase}`` (each device's latest upgrade),
``upgrade_outcomes_total{outcome}``, ``rollbacks_total{reason}``,
``upgrade_time_to_commit_seconds``, ``upgrade_time_to_rollback_seconds`` (histograms),
``rollout_devices{rollout,state}``, ``rollout_wave{rollout}``, ``rollout_phase{rollout,phase}``,
``security_events_total{kind}``, ``nats_connected``, ``nats_reconnects_total``,
``nats_dropped_messages_total{subscription}`` (dropped by nats-py past a subscription's pending
limits: a slow consumer), ``nats_pending_bytes{subscription}`` and
``nats_pending_bytes_limit{subscription}`` (the heartbeats waiting for the loop, and their limit),
``operator_ready``, ``http_event_streams``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from harmony_fleet.contracts import AgentUpgradePhase, subjects
from harmony_fleet.operator.http.rollout_view import RolloutView
from harmony_fleet.operator.http.timeline import Step, UpgradeTrack

if TYPE_CHECKING:
    from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)

Phase = AgentUpgradePhase

#: Seconds: an upgrade on one machine commits in a few seconds, a real download takes minutes.
BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class FleetCollector(Collector):
    """Reads the operator's memory when Prometheus scrapes."""

    def __init__(
        self, operator: Operator, rollouts: RolloutView, streams: Callable[[], int]
    ) -> None:
        self.operator = operator
        self.rollouts = rollouts
        self.streams = streams

    def collect(self) -> Iterator[Metric]:
        op = self.operator
        registry = op.registry
        online = 0
        versions: Counter[str] = Counter()
        phases: Counter[str] = Counter()
        for s in registry.devices.values():
            online += s.online
            versions[s.current_version] += 1
            if s.upgrade is not None:
                phases[s.upgrade.phase.value] += 1
        g = GaugeMetricFamily("fleet_devices", "Devices in the registry by state", labels=["state"])
        g.add_metric(["online"], online)
        g.add_metric(["offline"], len(registry.devices) - online)
        yield g
        g = GaugeMetricFamily(
            "fleet_devices_by_version", "Devices by the version they run", labels=["version"]
        )
        for version, n in sorted(versions.items()):
            g.add_metric([version], n)
        yield g
        g = GaugeMetricFamily(
            "fleet_upgrades", "Devices by the phase of their latest upgrade", labels=["phase"]
        )
        for phase in Phase:
            g.add_metric([phase.value], phases.get(phase.value, 0))
        yield g
        yield CounterMetricFamily(
            "fleet_heartbeats_ingested", "Heartbeats taken into the registry", registry.ingested
        )
        yield CounterMetricFamily(
            "fleet_heartbeats_rejected",
            "Heartbeats dropped (undecodable, wrong subject, not issued, redelivered)",
            registry.rejected,
        )
        yield CounterMetricFamily("fleet_registry_writes", "Registry records written", op.writes)
        yield CounterMetricFamily(
            "fleet_registry_write_errors", "Registry writes that failed", op.write_errors
        )
        c = CounterMetricFamily(
            "fleet_security_events", "Messages dropped as security events", labels=["kind"]
        )
        kinds = Counter(registry.security.counts)
        kinds["key_mismatch"] += op.coordinator.key_mismatches
        for kind in ("not_issued", "redelivered", "not_plain", "key_mismatch"):
            kinds.setdefault(kind, 0)
        for kind, n in sorted(kinds.items()):
            c.add_metric([kind], n)
        yield c
        nc = op.nc
        connected = nc is not None and nc.is_connected
        yield GaugeMetricFamily("fleet_nats_connected", "1 while NATS is connected", connected)
        reconnects = int(nc.stats.get("reconnects", 0)) if nc is not None else 0
        yield CounterMetricFamily("fleet_nats_reconnects", "Reconnections to NATS", reconnects)
        yield from self._pending()
        yield GaugeMetricFamily(
            "fleet_operator_ready", "1 once the registry is loaded", op.ready.is_set()
        )
        yield GaugeMetricFamily(
            "fleet_http_event_streams", "Dashboard pages following events", self.streams()
        )
        yield from self._rollouts()

    def _pending(self) -> Iterator[Metric]:
        op = self.operator
        c = CounterMetricFamily(
            "fleet_nats_dropped_messages",
            "Messages dropped past a subscription's pending limits (a slow consumer)",
            labels=["subscription"],
        )
        counts = Counter(op.drops.counts)
        counts.setdefault(subjects.ALL_HEARTBEATS, 0)
        for label, n in sorted(counts.items()):
            c.add_metric([label], n)
        yield c
        pending = GaugeMetricFamily(
            "fleet_nats_pending_bytes",
            "Payload bytes waiting in a subscription for the operator's loop",
            labels=["subscription"],
        )
        limit = GaugeMetricFamily(
            "fleet_nats_pending_bytes_limit",
            "Pending payload bytes past which messages are dropped",
            labels=["subscription"],
        )
        if (sub := op.heartbeats) is not None:
            pending.add_metric([sub.subject], sub.pending_bytes)
            limit.add_metric([sub.subject], op.pending_limits.bytes)
        yield pending
        yield limit

    def _rollouts(self) -> Iterator[Metric]:
        devices = GaugeMetricFamily(
            "fleet_rollout_devices", "Devices of a rollout by state", labels=["rollout", "state"]
        )
        wave = GaugeMetricFamily(
            "fleet_rollout_wave", "A rollout's current wave", labels=["rollout"]
        )
        phase = GaugeMetricFamily(
            "fleet_rollout_phase", "1 for a rollout's phase", labels=["rollout", "phase"]
        )
        for r in self.rollouts.rollouts:
            for state, n in sorted(r["counts"].items()):
                devices.add_metric([r["name"], state], n)
            wave.add_metric([r["name"]], r["wave"])
            phase.add_metric([r["name"], r["phase"]], 1)
        yield devices
        yield wave
        yield phase


class Metrics:
    """The registry ``/metrics`` renders, and the observers fed by the timeline."""

    def __init__(
        self, operator: Operator, rollouts: RolloutView, streams: Callable[[], int]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(FleetCollector(operator, rollouts, streams))
        self.outcomes = PromCounter(
            "fleet_upgrade_outcomes",
            "Upgrades that ended, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for phase in Phase:
            if phase.terminal:
                self.outcomes.labels(phase.value)
        self.rollbacks = PromCounter(
            "fleet_rollbacks", "Upgrades rolled back, by reason", ["reason"], registry=self.registry
        )
        self.to_commit = Histogram(
            "fleet_upgrade_time_to_commit_seconds",
            "From the marker to the commit, as the operator saw them",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.to_rollback = Histogram(
            "fleet_upgrade_time_to_rollback_seconds",
            "From the marker to the rollback, as the operator saw them",
            buckets=BUCKETS,
            registry=self.registry,
        )

    def on_step(self, track: UpgradeTrack, step: Step) -> None:
        """Timeline observer: count outcomes and reasons, time commits and rollbacks."""
        phase = Phase(step.phase)
        if phase.terminal:
            self.outcomes.labels(phase.value).inc()
        if phase is Phase.ROLLED_BACK:
            self.rollbacks.labels(step.error_code or "unknown").inc()
        first = track.steps[0].phase
        if first != Phase.REQUESTED.value:
            return  # seen from the middle (the operator started late): no honest duration
        elapsed = track.seconds_to(step.phase)
        if elapsed is None:
            return
        if phase is Phase.COMMITTED or (
            phase is Phase.SUCCEEDED and track.seconds_to(Phase.COMMITTED.value) is None
        ):
            self.to_commit.observe(elapsed)
        elif phase is Phase.ROLLED_BACK:
            self.to_rollback.observe(elapsed)
