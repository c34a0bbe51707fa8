"""Pause, resume, abort and undo; and plans that are the same when replayed."""

from __future__ import annotations

import msgspec

from harmony_fleet.contracts.rollout import DeviceState, RolloutPhase, RolloutStatus, Share
from harmony_fleet.core.rollout import plan
from harmony_fleet.core.rollout.fleet import upgrade_id_for

from .world import NEW, OLD, SHA_OLD, World, fleet, rollout

S = DeviceState
P = RolloutPhase


def _in_waves(world: World, wave: int) -> None:
    while world.status.wave < wave:
        world.tick()


def test_pause_starts_nothing_and_resume_goes_on() -> None:
    world = World(rollout(canary=Share(count=1), max_in_flight=Share(count=3)), fleet(12))
    _in_waves(world, 1)
    world.set(paused=True)
    before = world.started()
    for _ in range(20):
        assert not world.tick().starts
    assert world.status.phase is P.PAUSED and world.status.paused_from is P.WAVES
    assert world.started() == before
    world.set(paused=False)
    final = world.run()
    assert final.status.phase is P.DONE
    assert all(d.version == NEW for d in world.devices.values())


def test_abort_starts_nothing_more_and_lets_started_devices_finish() -> None:
    world = World(rollout(canary=Share(count=1), max_in_flight=Share(count=3)), fleet(12))
    _in_waves(world, 1)
    started = world.started()
    world.set(aborted=True)
    final = world.run()
    assert final.status.phase is P.ABORTED
    for _ in range(10):
        world.tick()
    assert world.started() == started
    assert {d.device_id for d in world.devices.values() if d.version == NEW} == started


def test_undo_returns_every_upgraded_device_to_its_previous_version_in_bounded_waves() -> None:
    devices = fleet(10)
    devices[9].version = NEW  # never touched by the rollout: never undone
    world = World(rollout(canary=Share(count=1), max_in_flight=Share(count=3)), devices)
    assert world.run().status.phase is P.DONE
    world.set(undo_requested=True)
    peak = 0
    while not (plan_ := world.tick()).finished:
        for start in plan_.starts:
            assert start.undo and start.target_version == OLD and start.sha256 == SHA_OLD
        peak = max(peak, sum(1 for r in world.progress.values() if r.undo is S.IN_PROGRESS))
    assert plan_.status.phase is P.UNDONE
    assert peak == 3
    assert [d.version for d in devices[:9]] == [OLD] * 9 and devices[9].version == NEW
    assert plan_.status.undo_counts == {S.SUCCEEDED: 9}
    assert "d009" not in plan_.undo_states


def test_undo_after_a_halt_returns_the_devices_that_succeeded() -> None:
    devices = fleet(10)
    world = World(
        rollout(canary=Share(count=1), max_in_flight=Share(count=4), halt_failure_rate=0.0),
        devices,
    )
    _in_waves(world, 1)
    wave1 = sorted(r.device_id for r in world.progress.values() if r.wave == 1)
    world.devices[wave1[0]].behaviour = "fail"
    assert world.run().status.phase is P.HALTED
    upgraded = {d.device_id for d in devices if d.version == NEW}
    assert len(upgraded) == 4  # the canary and three of wave 1
    world.set(undo_requested=True)
    final = world.run()
    assert final.status.phase is P.UNDONE
    assert all(d.version == OLD for d in devices)
    assert set(final.undo_states) == upgraded


def test_an_offline_device_keeps_the_undo_open_until_it_returns() -> None:
    devices = fleet(3)
    world = World(rollout(canary=Share(count=1), max_in_flight=Share(count=3)), devices)
    world.run()
    devices[1].online = False
    world.set(undo_requested=True)
    for _ in range(20):
        world.tick()
    assert world.status.phase is P.UNDOING
    assert world.plans[-1].undo_states["d001"] == (S.PENDING, "offline")
    devices[1].online = True
    assert world.run().status.phase is P.UNDONE
    assert devices[1].version == OLD


def test_the_same_inputs_give_the_same_plan() -> None:
    world = World(rollout(canary=Share(count=3), max_in_flight=Share(count=3)), fleet(9))
    views = [d.view() for d in world.devices.values()]
    status = RolloutStatus(name="r1")
    a = plan(world.rollout, status, views, {}, now=world.now)
    b = plan(world.rollout, status, views, {}, now=world.now)
    assert a == b
    assert {s.upgrade_id for s in a.starts} == {
        upgrade_id_for(world.rollout, s.device_id) for s in a.starts
    }


def test_a_record_written_but_its_marker_lost_gets_the_same_marker_again() -> None:
    """An operator that crashed between the record and the marker: the replayed plan writes
    the marker again, with the same upgrade id, and starts no other device."""
    world = World(rollout(canary=Share(count=2), max_in_flight=Share(count=2)), fleet(6))
    first = world.plan()
    for device in world.devices.values():  # the markers never made it
        device.marker = None
        device.markers_seen.clear()
    second = world.plan()
    assert [(s.device_id, s.upgrade_id) for s in second.starts] == [
        (s.device_id, s.upgrade_id) for s in first.starts
    ]
    assert second.writes == ()
    third = world.plan()
    assert third.starts == ()


def test_a_new_rollout_of_the_same_name_has_new_upgrade_ids() -> None:
    spec = rollout()
    later = msgspec.structs.replace(spec, created_at=spec.created_at + 1)
    assert upgrade_id_for(spec, "d001") != upgrade_id_for(later, "d001")
    assert upgrade_id_for(spec, "d001") != upgrade_id_for(spec, "d001", undo=True)
