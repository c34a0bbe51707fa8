"""Rollouts as the dashboard shows them: spec, status, and progress per wave.

The rollout driver (:mod:`harmony_fleet.operator.rollouts`) keeps everything in the rollout
buckets; this reads them (three ``snapshot`` calls) at most once per ``every_s``, on the
operator's loop, and keeps the last answer for the API, the page and the metrics (which must
not do I/O while Prometheus scrapes).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
)
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.contracts import DeviceProgress, Rollout, RolloutStatus
from harmony_fleet.errors import FleetError

log = logging.getLogger(__name__)

Json = dict[str, Any]


def rollout_json(
    spec: Rollout, status: RolloutStatus | None, progress: list[DeviceProgress]
) -> Json:
    """One rollout: its phase, counts, and per wave (0 is the canary) the devices by state."""
    waves: dict[int, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for p in progress:
        totals[p.state.value] += 1
        waves[p.wave if p.wave is not None else -1][p.state.value] += 1
    if status is not None and status.counts:
        # The engine's own counts cover every device the rollout selected (a device with no
        # progress record yet is pending).
        totals = Counter({state.value: n for state, n in status.counts.items()})
    done = sum(v for k, v in totals.items() if k not in {"pending", "in_progress"})
    return {
        "name": spec.name,
        "version": spec.version,
        "selector": spec.selector,
        "created_at": spec.created_at,
        "paused": spec.paused,
        "aborted": spec.aborted,
        "phase": status.phase.value if status else "Pending",
        "wave": status.wave if status else 0,
        "halt_reason": status.halt_reason if status else "",
        "updated_at": status.updated_at if status else 0.0,
        "devices": sum(totals.values()),
        "done": done,
        "counts": dict(totals),
        "waves": [
            {"wave": w, "counts": dict(c), "devices": sum(c.values())}
            for w, c in sorted(waves.items())
            if w >= 0
        ],
        "unassigned": sum(waves[-1].values()) if -1 in waves else 0,
    }


class RolloutView:
    """The last rollouts read (see the module docstring)."""

    def __init__(self, *, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self.rollouts: list[Json] = []
        self.read_at = 0.0

    async def refresh(self, nc: NatsClient, *, force: bool = False) -> list[Json]:
        now = time.monotonic()
        if not force and now - self.read_at < self.every_s:
            return self.rollouts
        self.read_at = now
        try:
            kv = FleetKV(nc)
            specs = await (await kv.open(ROLLOUTS)).snapshot()
            statuses = await (await kv.open(ROLLOUT_STATUSES)).snapshot()
            progress = await (await kv.open(ROLLOUT_PROGRESS)).snapshot()
        except FleetError as exc:
            log.debug("rollouts not read", extra={"error": str(exc)})
            return self.rollouts
        by_name = {e.value.name: e.value for e in statuses if isinstance(e, Entry)}
        per: dict[str, list[DeviceProgress]] = defaultdict(list)
        for e in progress:
            if isinstance(e, Entry):
                per[e.value.rollout].append(e.value)
        self.rollouts = sorted(
            (
                rollout_json(e.value, by_name.get(e.value.name), per.get(e.value.name, []))
                for e in specs
                if isinstance(e, Entry)
            ),
            key=lambda r: -float(r["created_at"]),
        )
        return self.rollouts
