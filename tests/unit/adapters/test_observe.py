"""HeartbeatGapMonitor: the gap is per device, whichever instance sends the heartbeat."""

from __future__ import annotations

from harmony_fleet.adapters.nats.observe import HeartbeatGapMonitor
from harmony_fleet.contracts import Heartbeat, Role


def hb(instance: str, version: str, role: Role = Role.MAIN) -> Heartbeat:
    return Heartbeat(
        device_id="d",
        instance_id=instance * 32,
        agent_version=version,
        role=role,
        seq=1,
        sent_at=0.0,
        uptime_s=0.0,
    )


def test_handover_between_instances_is_not_a_gap() -> None:
    m = HeartbeatGapMonitor()
    m.observe(hb("a", "1"), 0.0)
    m.observe(hb("b", "2", Role.CANDIDATE), 0.9)
    m.observe(hb("a", "1"), 1.0)
    m.observe(hb("b", "2", Role.CANDIDATE), 1.9)  # the old agent is gone, the candidate beats
    m.observe(hb("c", "2"), 2.5)
    assert m.max_gap("d", now=2.6) == 0.9
    assert m.devices["d"].versions == {"a" * 32: "1", "b" * 32: "2", "c" * 32: "2"}


def test_silence_counts_and_reset_starts_a_new_window() -> None:
    m = HeartbeatGapMonitor()
    m.observe(hb("a", "1"), 0.0)
    m.observe(hb("a", "1"), 3.0)
    assert m.max_gap("d", now=3.1) == 3.0
    m.reset()
    assert m.max_gap("d", now=3.5) == 0.5, "silence since the last beat is part of the gap"
    assert m.max_gap("unknown") == float("inf")
