"""Registry coalescing and presence: writes follow changes, not the heartbeat rate."""

from __future__ import annotations

import logging

import pytest

from harmony_fleet.contracts import Heartbeat, Role, encode
from harmony_fleet.core.presence import MAX_INTERVAL_S, MIN_INTERVAL_S, PresencePolicy
from harmony_fleet.operator.registry import Registry

A = "a" * 32
B = "b" * 32


def hb(
    seq: int,
    *,
    instance: str = A,
    version: str = "1.0.0",
    role: Role = Role.MAIN,
    device: str = "edge-1",
    interval: float = 5.0,
) -> bytes:
    return encode(
        Heartbeat(
            device_id=device,
            instance_id=instance,
            agent_version=version,
            role=role,
            seq=seq,
            sent_at=0.0,
            uptime_s=0.0,
            interval_s=interval,
        )
    )


def written(reg: Registry, now: float) -> list[str]:
    out = []
    for state in reg.due(now):
        state.dirty = False
        state.last_written = now
        out.append(state.device_id)
    return out


def test_steady_heartbeats_cause_no_writes_until_refresh() -> None:
    reg = Registry(PresencePolicy(refresh_s=60))
    reg.ingest("fleet.edge-1.heartbeat", hb(1), 0.0)
    assert written(reg, 0.0) == ["edge-1"]
    for i in range(2, 12):
        reg.ingest("fleet.edge-1.heartbeat", hb(i), i * 5.0)
        assert written(reg, i * 5.0) == [], "an unchanged heartbeat must not cause a write"
    assert written(reg, 61.0) == ["edge-1"], "the slow refresh writes last_seen"


def test_visible_changes_write_at_once() -> None:
    reg = Registry()
    reg.ingest("fleet.edge-1.heartbeat", hb(1), 0.0)
    written(reg, 0.0)
    reg.ingest("fleet.edge-1.heartbeat", hb(1, instance=B, version="2.0.0", role=Role.CANDIDATE), 1)
    assert written(reg, 1.0) == ["edge-1"], "a new instance is news"
    state = reg.devices["edge-1"]
    assert state.current_version == "1.0.0", "a candidate does not change the current version"
    reg.ingest("fleet.edge-1.heartbeat", hb(2, instance=B, version="2.0.0", role=Role.MAIN), 2)
    assert written(reg, 2.0) == ["edge-1"]
    assert state.current_version == "2.0.0"


def test_offline_after_missed_intervals_and_back() -> None:
    reg = Registry(PresencePolicy(missed=3, grace_s=1.0))
    reg.ingest("fleet.edge-1.heartbeat", hb(1, interval=5.0), 0.0)
    assert reg.sweep(15.9) == []
    assert reg.sweep(16.1) == ["edge-1"]
    assert not reg.devices["edge-1"].online
    reg.ingest("fleet.edge-1.heartbeat", hb(2), 20.0)
    assert reg.devices["edge-1"].online


def test_spoofed_and_malformed_heartbeats_are_dropped() -> None:
    reg = Registry()
    assert reg.ingest("fleet.other.heartbeat", hb(1), 0.0) is None
    assert reg.ingest("fleet.edge-1.heartbeat", b"{bad", 0.0) is None
    assert reg.ingest("fleet.edge-1.heartbeat", b"x" * 70_000, 0.0) is None
    assert reg.rejected == 3
    assert reg.devices == {}


def test_a_device_sending_garbage_in_a_loop_gets_one_log_line_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reg = Registry()
    with caplog.at_level(logging.WARNING, logger="harmony_fleet.operator.registry"):
        for i in range(1_000):
            reg.ingest("fleet.edge-1.heartbeat", b"{bad", i * 0.01)  # 10 s of garbage
            reg.ingest("fleet.edge-1.heartbeat", hb(1, device="edge-2"), i * 0.01)
        lines = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert [getattr(r, "kind", None) for r in lines] == ["undecodable", "subject_mismatch"]
        assert "detail" in lines[0].__dict__ and "claims edge-2" in lines[1].__dict__["detail"]
        reg.ingest("fleet.edge-1.heartbeat", b"{bad", 61.0)  # the next minute: one more line
        last = [r for r in caplog.records if "dropped" in r.getMessage()][-1]
        assert getattr(last, "unlogged", None) == 999
    assert reg.rejected == 2_001
    assert reg.security.counts["undecodable"] == 1_001
    assert reg.security.counts["subject_mismatch"] == 1_000


def test_record_keeps_a_bounded_number_of_instances() -> None:
    reg = Registry()
    for i in range(10):
        reg.ingest("fleet.edge-1.heartbeat", hb(1, instance=f"{i:032x}"), float(i))
    record = reg.devices["edge-1"].record(10.0)
    assert len(record.instances) == 4
    assert record.instances[0].instance_id == f"{9:032x}", "most recent first"


def test_reload_from_record_gives_a_full_timeout_to_show_up() -> None:
    reg = Registry(PresencePolicy(missed=3, grace_s=0.0))
    reg.ingest("fleet.edge-1.heartbeat", hb(1, interval=5.0), 0.0)
    record = reg.devices["edge-1"].record(0.0)
    fresh = Registry(PresencePolicy(missed=3, grace_s=0.0))
    fresh.load(record, now=100.0)
    assert fresh.sweep(110.0) == [], "loaded online: gets a full offline window after restart"
    assert fresh.sweep(116.0) == ["edge-1"]


def test_a_heartbeat_interval_out_of_bounds_is_clamped() -> None:
    """One beat saying ``interval_s: 1e12`` must not keep a dead device online for ever (fails
    without the clamp: the device stays online at any later time)."""
    reg = Registry(PresencePolicy(missed=3, grace_s=2.0))
    reg.ingest("fleet.edge-1.heartbeat", hb(1, interval=1e12), 0.0)
    assert reg.devices["edge-1"].interval_s == MAX_INTERVAL_S
    assert reg.sweep(3 * MAX_INTERVAL_S + 3.0) == ["edge-1"]
    assert not reg.devices["edge-1"].online
    reg.ingest("fleet.edge-2.heartbeat", hb(1, device="edge-2", interval=0.0), 0.0)
    assert reg.devices["edge-2"].interval_s == MIN_INTERVAL_S


def test_change_listeners_hear_what_a_rollout_reads_not_every_heartbeat() -> None:
    reg = Registry(PresencePolicy())
    heard: list[str] = []
    reg.add_change_listener(heard.append)
    reg.ingest("fleet.edge-1.heartbeat", hb(1), 0.0)
    assert heard == ["edge-1"], "a new device"
    for i in range(2, 6):
        reg.ingest("fleet.edge-1.heartbeat", hb(i), i * 5.0)
    reg.ingest("fleet.edge-1.heartbeat", hb(6, role=Role.CANDIDATE, instance=B, version="2"), 30)
    assert heard == ["edge-1"], "steady heartbeats and a candidate change nothing it reads"
    reg.ingest("fleet.edge-1.heartbeat", hb(7, instance=B, version="2"), 31.0)
    assert heard == ["edge-1", "edge-1"], "its main version changed"
    assert reg.sweep(200.0) == ["edge-1"]
    assert heard == ["edge-1"] * 3, "it went offline"
    reg.ingest("fleet.edge-1.heartbeat", hb(8, instance=B, version="2"), 201.0)
    assert heard == ["edge-1"] * 4, "it came back"
