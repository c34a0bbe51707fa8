"""The driver with the recording fake device, a fake clock and in-memory sinks: no sleeps.

Waits are on conditions (a status written, a call made, a timer armed), each bounded by a
real-time guard so a broken driver fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from harmony_fleet.agent.upgrade import UpgradeDriver
from harmony_fleet.agent.upgrade.wiring import hear_candidates
from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.heartbeat import Heartbeat, Role
from harmony_fleet.contracts.ids import DeviceId, InstanceId, UpgradeId
from harmony_fleet.contracts.subjects import heartbeat as heartbeat_subject
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.contracts.upgrade import Progress, UpgradeMarker
from harmony_fleet.core.upgrade.device import CandidateRunner, DeviceFiles, ProcessOutcome
from harmony_fleet.core.upgrade.records import InFlight, LocalState
from harmony_fleet.core.upgrade.states import SELF_TEST_GRACE_S, ErrorCode, UpgradeState
from harmony_fleet.errors import IntegrityError, OutcomeUnknown
from harmony_fleet.testing import FakeClock, FakeDevice, MemoryStateStore, MemoryStatusSink

from .support import CAND, NEW, OLD, OWN, TIMEOUTS, U1, U2, marker

T = TypeVar("T")
DEVICE = DeviceId("dev-1")


async def until(aw: Awaitable[T]) -> T:
    """Guard a condition wait with a real-time bound (never reached when the code works)."""
    return await asyncio.wait_for(aw, 5.0)


@dataclass
class Rig:
    driver: UpgradeDriver
    device: FakeDevice
    sink: MemoryStatusSink
    store: MemoryStateStore
    clock: FakeClock

    async def reach(self, phase: P) -> None:
        await until(self.sink.wait_for_phase(phase))

    async def heartbeat(self, instance: InstanceId = CAND, version: str = NEW) -> None:
        await self.driver.record_heartbeat(
            Heartbeat(
                device_id=DEVICE,
                instance_id=instance,
                agent_version=version,
                role=Role.CANDIDATE,
                seq=1,
                sent_at=1.0,
                uptime_s=1.0,
                upgrade_id=U1,
            )
        )

    async def to_cutover(self, m: UpgradeMarker | None = None) -> None:
        await self.driver.run_marker(m or marker())
        await self.reach(P.CUTOVER_READY)
        await until(self.clock.wait_for_pending())


def make_rig(state: LocalState | None = None, *, current: str = OLD) -> Rig:
    device = FakeDevice(current=OLD, versions={OLD, NEW} if current == NEW else {OLD})
    device.current = current  # type: ignore[assignment]
    sink, store, clock = MemoryStatusSink(), MemoryStateStore(state), FakeClock()
    files: DeviceFiles = device.files  # the fakes satisfy the Protocols (checked by mypy too)
    runner: CandidateRunner = device.runner
    driver = UpgradeDriver(
        device_id=DEVICE,
        instance_id=OWN,
        running_version=OLD if current == OLD else NEW,
        files=files,
        runner=runner,
        status_sink=sink,
        state_store=store,
        clock=clock,
    )
    return Rig(driver, device, sink, store, clock)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = make_rig()
    await r.driver.resume_after_restart()
    yield r
    await r.driver.close()


async def test_happy_path_commits_only_on_the_stop(rig: Rig) -> None:
    await rig.to_cutover()
    assert rig.device.current == OLD, "current must not move before the stop"
    assert rig.driver.snapshot.armed_for == U1
    await rig.heartbeat()
    await rig.reach(P.HOLDING)
    reply = await rig.driver.on_stop(U1, "c1")
    assert reply is not None and reply.ok and reply.code is ReplyCode.OK
    assert rig.device.current == NEW and rig.device.swaps == [NEW]
    assert rig.driver.handed_over and rig.driver.snapshot.armed_for is None
    await until(rig.driver.wait_handover())
    await until(rig.driver.flush_status())
    assert rig.sink.phases == [P.STAGING, P.VERIFYING, P.CUTOVER_READY, P.HOLDING, P.COMMITTED]
    assert rig.store.state.finished == (U1,)
    assert rig.store.state.in_flight is not None
    assert rig.store.state.in_flight.state is UpgradeState.COMMITTED
    order = rig.device.names
    assert order.index("stage") < order.index("self_test") < order.index("start_candidate")
    assert order.index("start_candidate") < order.index("swap_current")


async def test_stop_while_unarmed_or_for_another_upgrade_changes_nothing(rig: Rig) -> None:
    reply = await rig.driver.on_stop(U1, "c0")
    assert reply is not None and reply.code is ReplyCode.NOT_ARMED
    await rig.to_cutover()
    reply = await rig.driver.on_stop(U2, "c1")
    assert reply is not None and reply.code is ReplyCode.WRONG_UPGRADE
    assert rig.device.swaps == [] and rig.driver.snapshot.state is UpgradeState.CUTOVER_READY
    assert not rig.driver.handed_over


async def test_silence_reverts_after_the_cutover_timeout(rig: Rig) -> None:
    await rig.to_cutover()
    rig.clock.advance(TIMEOUTS.cutover_s)
    await rig.reach(P.ROLLED_BACK)
    assert rig.device.current == OLD and not rig.device.candidate_running
    assert rig.device.versions == {OLD}
    assert rig.sink.latest is not None and rig.sink.latest.error_code == ErrorCode.CUTOVER_TIMEOUT
    assert NEW not in rig.store.state.failed_versions
    reply = await rig.driver.on_stop(U1, "late")
    assert reply is not None and reply.code is ReplyCode.NOT_ARMED
    assert rig.device.swaps == []


async def test_candidate_heartbeats_turn_the_wait_into_a_bounded_hold(rig: Rig) -> None:
    await rig.to_cutover()
    await rig.heartbeat()
    await rig.reach(P.HOLDING)
    rig.clock.advance(TIMEOUTS.cutover_s)  # the cutover timer was cancelled: nothing happens
    assert rig.driver.snapshot.state is UpgradeState.HOLDING
    rig.clock.advance(TIMEOUTS.hold_s)
    await rig.reach(P.ROLLED_BACK)
    assert rig.sink.latest is not None and rig.sink.latest.error_code == ErrorCode.HOLD_TIMEOUT


async def test_own_and_old_version_heartbeats_do_not_hold(rig: Rig) -> None:
    await rig.to_cutover()
    await rig.heartbeat(instance=OWN)
    await rig.heartbeat(version=OLD)
    assert rig.driver.snapshot.state is UpgradeState.CUTOVER_READY


async def test_candidate_exit_reverts_at_once_keeping_code_and_logs(rig: Rig) -> None:
    await rig.to_cutover()
    rig.device.exit_candidate(3, ("Traceback", "boom"))
    status = await until(rig.sink.wait_for_phase(P.ROLLED_BACK))
    assert status.candidate_exit_code == 3
    assert status.candidate_log_tail == ["Traceback", "boom"]
    assert status.error_code == ErrorCode.CANDIDATE_EXITED
    assert rig.store.state.failed_versions == (NEW,)
    assert rig.device.current == OLD


async def test_a_hung_self_test_fails_on_the_machines_timer(rig: Rig) -> None:
    rig.device.hang.add("self_test")
    await rig.driver.run_marker(marker())
    await until(rig.device.wait_for_call("self_test"))
    rig.clock.advance(TIMEOUTS.self_test_s + SELF_TEST_GRACE_S)
    status = await until(rig.sink.wait_for_phase(P.FAILED))
    assert status.error_code == ErrorCode.SELF_TEST_TIMEOUT
    assert "start_candidate" not in rig.device.names
    assert rig.device.versions == {OLD} and rig.device.current == OLD


async def test_a_failing_self_test_reports_its_exit_code(rig: Rig) -> None:
    rig.device.self_test_outcome = ProcessOutcome(exit_code=2, log_tail=("missing lib",))
    await rig.driver.run_marker(marker())
    status = await until(rig.sink.wait_for_phase(P.FAILED))
    assert (status.error_code, status.candidate_exit_code) == (ErrorCode.SELF_TEST_FAILED, 2)
    assert rig.store.state.failed_versions == (NEW,)


async def test_a_corrupt_download_fails_and_cleans_up(rig: Rig) -> None:
    rig.device.fail["stage"] = IntegrityError("sha256", "0" * 64, "f" * 64)
    await rig.driver.run_marker(marker())
    status = await until(rig.sink.wait_for_phase(P.FAILED))
    assert status.error_code == ErrorCode.INTEGRITY
    assert "cleanup_staging" in rig.device.names
    assert "start_candidate" not in rig.device.names
    assert rig.store.state.failed_versions == ()


async def test_staging_progress_reaches_the_status(rig: Rig) -> None:
    rig.device.progress = [Progress(bytes_done=10, bytes_total=100)]
    rig.device.hang.add("stage")
    await rig.driver.run_marker(marker())
    status = await until(rig.sink.wait_for(lambda s: s.progress is not None))
    assert status.phase is P.STAGING and status.progress == Progress(bytes_done=10, bytes_total=100)


async def test_a_failed_swap_refuses_the_stop_and_reverts(rig: Rig) -> None:
    await rig.to_cutover()
    rig.device.fail["swap_current"] = OSError("EIO")
    reply = await rig.driver.on_stop(U1, "c1")
    assert reply is not None and reply.code is ReplyCode.ERROR
    await rig.reach(P.ROLLED_BACK)
    assert rig.device.current == OLD and not rig.driver.handed_over


async def test_a_flaky_revert_is_retried(rig: Rig) -> None:
    await rig.to_cutover()
    rig.device.fail["revert"] = OSError("busy")
    rig.device.fail_times["revert"] = 1
    rig.clock.advance(TIMEOUTS.cutover_s)
    await until(rig.device.wait_for_call("revert"))
    await until(rig.clock.wait_for_pending())
    rig.clock.advance(5.0)
    await rig.reach(P.ROLLED_BACK)
    assert rig.device.names.count("revert") == 2


async def test_an_unknown_outcome_status_write_is_retried_with_the_same_value(rig: Rig) -> None:
    rig.sink.fail_next(OutcomeUnknown("timed out"), applied=True)
    rig.device.hang.add("stage")
    await rig.driver.run_marker(marker())
    await until(rig.sink.wait_for_phase(P.STAGING))
    await until(rig.clock.wait_for_pending(2))  # the staging deadline and the retry
    rig.clock.advance(1.0)
    await until(rig.driver.flush_status())
    assert rig.sink.attempts == 2
    first, second = rig.sink.written
    assert first is second, "the retry writes the identical value"


async def test_duplicate_and_replayed_markers_never_rerun(rig: Rig) -> None:
    await rig.to_cutover()
    await rig.driver.run_marker(marker())
    await rig.driver.on_stop(U1, "c1")
    await rig.driver.run_marker(marker())
    assert rig.device.names.count("stage") == 1
    assert rig.device.names.count("start_candidate") == 1


async def test_marker_for_another_device_is_ignored(rig: Rig) -> None:
    await rig.driver.run_marker(marker(device="dev-2"))
    assert rig.device.names == ["self_heal_layout", "rollback_note", "artifact_sha256"]
    assert rig.driver.snapshot.state is UpgradeState.IDLE


async def test_a_newer_marker_during_cutover_waits_then_runs(rig: Rig) -> None:
    await rig.to_cutover()
    await rig.driver.run_marker(marker(U2, "3.0.0"))
    pending = await until(rig.sink.wait_for(lambda s: s.pending_upgrade_id == U2))
    assert pending.upgrade_id == U1
    rig.device.hang.add("stage")
    rig.clock.advance(TIMEOUTS.cutover_s)
    await until(rig.sink.wait_for(lambda s: s.upgrade_id == U2 and s.phase is P.STAGING))
    assert rig.device.names.count("stage") == 2


async def test_restart_with_a_candidate_in_flight_reverts_it() -> None:
    record = InFlight(marker=marker(), from_version=OLD, state=UpgradeState.CUTOVER_READY)
    r = make_rig(LocalState(in_flight=record))
    try:
        await r.driver.resume_after_restart()
        status = await until(r.sink.wait_for_phase(P.ROLLED_BACK))
        assert status.error_code == ErrorCode.AGENT_RESTARTED
        assert "revert" in r.device.names and r.device.current == OLD
    finally:
        await r.driver.close()


async def test_new_main_after_commit_stops_the_candidate_and_confirms() -> None:
    """Without an after-commit seam nothing watches the new main: Succeeded as it runs."""
    record = InFlight(marker=marker(), from_version=OLD, state=UpgradeState.COMMITTED)
    r = make_rig(LocalState(finished=(U1,), in_flight=record), current=NEW)
    try:
        await r.driver.resume_after_restart()
        status = await until(r.sink.wait_for_phase(P.SUCCEEDED))
        assert status.to_version == NEW and status.watch_until is None
        assert "stop_candidate" in r.device.names and not r.driver.handed_over
        reply = await r.driver.on_stop(U1, "retry")
        assert reply is not None and reply.code is ReplyCode.OK  # the operator's late retry
        assert r.device.swaps == []
    finally:
        await r.driver.close()


async def test_close_cancels_hung_work() -> None:
    r = make_rig()
    await r.driver.resume_after_restart()
    r.device.hang.add("stage")
    await r.driver.run_marker(marker())
    await until(r.device.wait_for_call("stage"))
    await r.driver.close()
    assert r.clock.pending == 0
    assert UpgradeId(U1) not in r.store.state.finished


class FakeSubscriptions:
    """The ``subscribe`` seam of a NATS client: which subjects are subscribed now."""

    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.changed = asyncio.Event()

    async def subscribe(self, subject: str, cb: object) -> FakeSubscriptions.Sub:
        self.subjects.append(subject)
        self.changed.set()
        return FakeSubscriptions.Sub(self, subject)

    async def until(self, subjects: list[str]) -> None:
        while self.subjects != subjects:
            self.changed.clear()
            await self.changed.wait()

    @dataclass
    class Sub:
        owner: FakeSubscriptions
        subject: str

        async def unsubscribe(self) -> None:
            self.owner.subjects.remove(self.subject)
            self.owner.changed.set()


async def test_the_main_hears_heartbeats_only_while_a_candidate_beat_matters(rig: Rig) -> None:
    nc = FakeSubscriptions()

    async def ignore(_msg: object) -> None:
        return None

    task = asyncio.ensure_future(hear_candidates(nc, rig.driver, ignore))
    try:
        await asyncio.sleep(0)
        assert nc.subjects == [], "an idle main is sent no heartbeats"
        await rig.to_cutover()
        await until(nc.until([heartbeat_subject(DEVICE)]))
        await rig.heartbeat()
        await rig.reach(P.HOLDING)
        assert nc.subjects == [heartbeat_subject(DEVICE)]
        reply = await rig.driver.on_stop(U1, "c1")
        assert reply is not None and reply.ok
        await until(nc.until([]))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert nc.subjects == []
