"""Pending limits from one budget, and slow-consumer drops counted with rate-limited warnings."""

from __future__ import annotations

import logging

import pytest

from harmony_fleet.adapters.nats.slow import (
    MESSAGE_OVERHEAD_BYTES,
    Drops,
    pending_limits,
    subscription_label,
)
from harmony_fleet.errors import ConfigError

HEARTBEATS = "fleet.*.heartbeat"


@pytest.mark.parametrize("budget", [1024, 4096, 65_537, 128 * 1024 * 1024, 10**10])
def test_the_payloads_and_the_overhead_together_stay_within_the_budget(budget: int) -> None:
    limits = pending_limits(budget)
    assert limits.msgs >= 1
    assert limits.bytes > 0  # 0 would switch nats-py's byte limit off
    assert limits.bytes + limits.msgs * MESSAGE_OVERHEAD_BYTES <= budget


def test_the_default_budget_holds_over_a_hundred_thousand_heartbeats() -> None:
    limits = pending_limits(128 * 1024 * 1024)
    assert limits == type(limits)(msgs=131_072, bytes=64 * 1024 * 1024)


def test_a_budget_that_holds_no_message_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 1024"):
        pending_limits(1023)


def test_a_jetstream_delivery_is_counted_under_its_stream_not_its_inbox() -> None:
    assert subscription_label(HEARTBEATS, "fleet.a.heartbeat") == HEARTBEATS
    assert subscription_label("_INBOX.abc.def", "$KV.fleet_upgrade_marker.a") == (
        "$KV.fleet_upgrade_marker"
    )


def test_drops_are_counted_by_subscription_and_warned_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    drops = Drops(log_every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="harmony_fleet.adapters.nats.slow"):
        logged = [drops.record(HEARTBEATS, f"fleet.d{i}.heartbeat") for i in range(1000)]
        drops.record("_INBOX.x", "$KV.fleet_devices.a")
        now[0] += 10.0
        assert drops.record(HEARTBEATS, "fleet.d.heartbeat")
    assert logged.count(True) == 1 and logged[0]
    assert drops.counts == {HEARTBEATS: 1001, "$KV.fleet_devices": 1}
    assert drops.total == 1002
    warned = [(r.subscription, r.dropped) for r in caplog.records]  # type: ignore[attr-defined]
    # The second window's warning carries the drops that were not logged one by one.
    assert warned == [(HEARTBEATS, 1), ("$KV.fleet_devices", 1), (HEARTBEATS, 1000)]
