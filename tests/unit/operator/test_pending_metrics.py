"""/metrics exports the heartbeats' pending limit and the messages dropped past it."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client", reason="the [dashboard] extra")

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harmony_fleet.operator.http.metrics import Metrics
from harmony_fleet.operator.http.rollout_view import RolloutView
from harmony_fleet.operator.runtime import Operator, OperatorConfig


def samples(op: Operator) -> dict[tuple[str, str], float]:
    text = generate_latest(Metrics(op, RolloutView(), lambda: 0).registry).decode()
    return {
        (s.name, s.labels.get("subscription", "")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("fleet_nats_")
    }


def test_drops_are_exported_by_subscription_from_zero() -> None:
    op = Operator(OperatorConfig(max_pending_bytes=4096))
    name = "fleet_nats_dropped_messages_total"
    assert samples(op)[(name, "fleet.*.heartbeat")] == 0
    for _ in range(3):
        op.drops.record("fleet.*.heartbeat", "fleet.a.heartbeat")
    op.drops.record("_INBOX.x", "$KV.fleet_devices.a")
    got = samples(op)
    assert got[(name, "fleet.*.heartbeat")] == 3
    assert got[(name, "$KV.fleet_devices")] == 1
    assert op.pending_limits.bytes == 2048
