"""The driver around a commit, with a recording fake device: the watch note is armed before
the swap (or the commit is refused), the new main holds Committed for its window then says
Succeeded, keeps the previous version and collects the rest, and the previous version turns a
launcher's rollback note into the truth. Fake clock, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from harmony_fleet.adapters.device.errors import DiskError
from harmony_fleet.agent.upgrade import UpgradeDriver
from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade.device import CandidateRunner, DeviceFiles
from harmony_fleet.core.upgrade.records import InFlight, LocalState
from harmony_fleet.core.upgrade.states import WATCH_SETTLE_S, ErrorCode, UpgradeState
from harmony_fleet.core.upgrade.watch import STABLE_S, RollbackNote, WatchReason
from harmony_fleet.testing import FakeClock, FakeDevice, MemoryStateStore, MemoryStatusSink

from .support import NEW, OLD, OWN, TIMEOUTS, U1, marker
from .test_driver import DEVICE, Rig, until

OLD_SHA = "1" * 64
#: The fake clock's start: a commit "now", the whole window ahead.
T_COMMIT = FakeClock().now()


def rig_with(state: LocalState | None = None, *, running: str = OLD, **script: object) -> Rig:
    """A rig whose fake device is watched by a launcher, with its scripting set."""
    device = FakeDevice(current=Version(running), versions={OLD, NEW}, watched=True)
    device.hashes = {OLD: OLD_SHA}
    for name, value in script.items():
        assert hasattr(device, name), name
        setattr(device, name, value)
    sink, store, clock = MemoryStatusSink(), MemoryStateStore(state), FakeClock()
    files: DeviceFiles = device.files  # the fakes satisfy the Protocols (checked by mypy too)
    runner: CandidateRunner = device.runner
    driver = UpgradeDriver(
        device_id=DEVICE,
        instance_id=OWN,
        running_version=Version(running),
        files=files,
        runner=runner,
        status_sink=sink,
        state_store=store,
        clock=clock,
    )
    return Rig(driver, device, sink, store, clock)


@pytest.fixture
async def old() -> AsyncIterator[Rig]:
    r = rig_with()
    await r.driver.resume_after_restart()
    yield r
    await r.driver.close()


async def test_the_watch_is_armed_before_the_swap_with_the_stops_time(
    old: Rig,
) -> None:
    rig = old
    assert rig.store.state.installed == {OLD: OLD_SHA}, "a first install is hashed at start"
    await rig.to_cutover()
    reply = await rig.driver.on_stop(U1, "c1")
    assert reply is not None and reply.code is ReplyCode.OK
    (plan,) = rig.device.armed
    assert rig.device.names.index("arm_watch") < rig.device.names.index("swap_current")
    assert (plan.previous, plan.target, plan.window_s) == (OLD, NEW, TIMEOUTS.watch_s)
    assert plan.committed_at == rig.clock.now()
    await until(rig.driver.flush_status())
    assert rig.sink.latest is not None
    assert rig.sink.latest.watch_until == plan.committed_at + TIMEOUTS.watch_s
    assert rig.store.state.installed[NEW] == marker().sha256


async def test_no_commit_without_its_safety_net(old: Rig) -> None:
    rig = old
    rig.device.fail["arm_watch"] = DiskError(
        "write post-commit.json", OSError(28, "No space left on device")
    )
    await rig.to_cutover()
    reply = await rig.driver.on_stop(U1, "c1")
    assert reply is not None and reply.code is ReplyCode.ERROR
    status = await until(rig.sink.wait_for_phase(P.ROLLED_BACK))
    assert status.error_code == ErrorCode.COMMIT_FAILED
    assert "post-commit watch" in status.error_detail
    assert rig.device.swaps == [] and rig.device.current == OLD
    assert U1 in rig.device.ended


def committed_record(**changes: object) -> InFlight:
    base = InFlight(
        marker=marker(), from_version=OLD, state=UpgradeState.COMMITTED, committed_at=T_COMMIT
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_the_new_main_holds_committed_for_its_window_then_succeeds() -> None:
    rig = rig_with(
        LocalState(
            finished=(U1,),
            in_flight=committed_record(),
            installed={OLD: OLD_SHA, "0.9.0": "9" * 64},
        ),
        running=NEW,
        remove=[Version("0.9.0")],
    )
    try:
        await rig.driver.resume_after_restart()
        status = await until(rig.sink.wait_for_phase(P.COMMITTED))
        assert status.watch_until == T_COMMIT + TIMEOUTS.watch_s
        assert "stop_candidate" in rig.device.names
        assert rig.store.state.in_flight is not None
        assert rig.store.state.in_flight.state is UpgradeState.WATCHING
        await until(rig.clock.wait_for_pending())
        rig.clock.advance(TIMEOUTS.watch_s)
        await asyncio.sleep(0)
        assert rig.sink.latest is not None and rig.sink.latest.phase is P.COMMITTED
        rig.clock.advance(WATCH_SETTLE_S)
        status = await until(rig.sink.wait_for_phase(P.SUCCEEDED))
        assert status.previous_version == OLD and status.previous_sha256 == OLD_SHA
        await until(rig.driver.flush_status())
        assert rig.store.state.previous == OLD
        ((protect, keep),) = rig.device.collected
        assert {OLD, NEW} <= protect and keep == 2
        assert "0.9.0" not in rig.store.state.installed
        assert U1 in rig.device.ended
    finally:
        await rig.driver.close()


async def test_a_new_main_started_after_its_window_succeeds_after_a_steady_run() -> None:
    rig = rig_with(
        LocalState(finished=(U1,), in_flight=committed_record(committed_at=T_COMMIT - 3600)),
        running=NEW,
        since_commit_s=3600.0,
    )
    try:
        await rig.driver.resume_after_restart()
        await until(rig.sink.wait_for_phase(P.COMMITTED))
        await until(rig.clock.wait_for_pending())
        rig.clock.advance(STABLE_S + WATCH_SETTLE_S - 0.1)
        await asyncio.sleep(0)
        assert rig.sink.latest is not None and rig.sink.latest.phase is P.COMMITTED
        rig.clock.advance(0.1)
        await until(rig.sink.wait_for_phase(P.SUCCEEDED))
    finally:
        await rig.driver.close()


async def test_the_previous_version_reports_the_launchers_rollback() -> None:
    note = RollbackNote(
        upgrade_id=U1,
        previous=OLD,
        target=NEW,
        reason=WatchReason.NO_HEARTBEAT,
        detail="2.0.0 sent no heartbeat for over 5 s",
        exit_codes=(0,),
        log_tail=("build fault: heartbeats stop here",),
    )
    rig = rig_with(LocalState(finished=(U1,), in_flight=committed_record()), rollback=note)
    try:
        await rig.driver.resume_after_restart()
        status = await until(rig.sink.wait_for_phase(P.ROLLED_BACK))
        assert status.error_code == ErrorCode.POST_COMMIT
        assert status.candidate_exit_code == 0
        assert status.candidate_log_tail == ["build fault: heartbeats stop here"]
        assert "no_heartbeat" in status.error_detail
        assert rig.store.state.failed_versions == (NEW,)
        assert U1 in rig.device.ended
        assert rig.device.swaps == [], "the launcher already moved current back"
    finally:
        await rig.driver.close()
