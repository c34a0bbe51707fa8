"""The post-commit watch against the device's clocks: a wall-clock step (an NTP correction on a
board without a real-time clock) and a slow start on a loaded machine must not look like a
silence, end the window early or stretch it. Fake clocks step the wall clock by ±10 minutes
inside the window; the launcher's and the agent's decisions run on monotonic time only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgspec
import pytest

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.device.notes import boot_id, liveness_file, mark_alive
from harmony_fleet.adapters.device.watcher import PostCommitWatcher, RunLiveness
from harmony_fleet.contracts.ids import UpgradeId
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.records import InFlight, LocalState
from harmony_fleet.core.upgrade.states import WATCH_SETTLE_S, UpgradeState
from harmony_fleet.core.upgrade.watch import (
    START_GRACE_S,
    WatchNote,
    WatchReason,
    first_touch_within,
    stale_after,
)

from .support import NEW, OLD, TIMEOUTS, U1, marker
from .test_driver import until
from .test_driver_after_commit import T_COMMIT, rig_with

STEP_S = 600.0  # ten minutes, either way
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def layout(tmp_path: Path) -> AgentLayout:
    lay = AgentLayout(tmp_path / "opt")
    for v in (OLD, NEW):
        lay.version_dir(v).mkdir(parents=True)
        (lay.version_dir(v) / "agent").write_text(v)
    lay.swap_current(NEW)
    return lay


async def armed(layout: AgentLayout, run_dir: Path, mono: Clock) -> AgentFiles:
    files = AgentFiles(
        layout,
        running_version=NEW,
        run_dir=run_dir,
        watched=True,
        stale_after_s=stale_after(0.5),
        mono=mono,
    )
    plan = WatchPlan(
        upgrade_id=U1, previous=OLD, target=NEW, committed_at=T0, window_s=60.0, max_failures=3
    )
    await files.arm_watch(plan)
    return files


def beat(path: Path, *, wall_step: float = 0.0) -> None:
    """One heartbeat tick of an agent whose wall clock was stepped by ``wall_step``: the file's
    time jumps with it (as ``touch`` would stamp it)."""
    mark_alive(path)
    if wall_step:
        st = path.stat()
        os.utime(path, (st.st_atime + wall_step, st.st_mtime + wall_step))


@pytest.mark.parametrize("step", [STEP_S, -STEP_S])
async def test_a_wall_clock_step_inside_the_window_is_not_silence(
    layout: AgentLayout, tmp_path: Path, step: float
) -> None:
    run_dir = tmp_path / "run"
    mono, wall = Clock(100.0), Clock(T0)
    await armed(layout, run_dir, mono)
    watcher = PostCommitWatcher(layout, run_dir, clock=wall, mono=mono)
    run = watcher.run_liveness()
    alive = liveness_file(run_dir)
    for tick in range(40):  # 20 s of beats every 0.5 s; the wall clock steps half-way
        if tick == 20:
            wall.now += step
        beat(alive, wall_step=step if tick >= 20 else 0.0)
        mono.now += 0.5
        wall.now += 0.5
        assert watcher.silent(NEW, run) is None, f"tick {tick}: a step is not a silence"
    # A real silence is still caught, on the monotonic clock, whatever the wall clock says.
    mono.now += stale_after(0.5) - 0.5
    assert watcher.silent(NEW, run) is None
    mono.now += 1.0
    wall.now -= 2 * step
    detail = watcher.silent(NEW, run)
    assert detail is not None and "no heartbeat" in detail
    done = watcher.on_exit(NEW, 0, None, stopping=False)
    assert done is not None and done.reason is WatchReason.NO_HEARTBEAT


async def test_a_slow_first_touch_on_a_loaded_machine_is_not_a_failed_start(
    layout: AgentLayout, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    mono = Clock(100.0)
    await armed(layout, run_dir, mono)
    watcher = PostCommitWatcher(layout, run_dir, mono=mono)
    alive = liveness_file(run_dir)
    beat(alive)  # the old main's last tick, before the new run started
    run = watcher.run_liveness()
    for _ in range(int(START_GRACE_S * 4)):  # four times the old fixed grace, no first touch
        mono.now += 1.0
        assert watcher.silent(NEW, run) is None
    beat(alive)  # importing took its time; now it beats
    mono.now += 1.0
    assert watcher.silent(NEW, run) is None
    assert layout.current_version() == NEW and watcher.rollbacks == []


async def test_a_run_that_never_shows_a_sign_of_life_is_still_caught(
    layout: AgentLayout, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    mono = Clock(100.0)
    await armed(layout, run_dir, mono)
    watcher = PostCommitWatcher(layout, run_dir, mono=mono)
    run = watcher.run_liveness()
    note = WatchNote(
        upgrade_id=U1,
        previous=OLD,
        target=NEW,
        committed_at=T0,
        window_s=60.0,
        max_failures=3,
        stale_after_s=stale_after(0.5),
    )
    mono.now += first_touch_within(note)
    assert watcher.silent(NEW, run) is None
    mono.now += 1.0
    detail = watcher.silent(NEW, run)
    assert detail is not None and "never showed a sign of life" in detail


def test_the_liveness_token_changes_with_every_tick_whatever_the_file_time(
    tmp_path: Path,
) -> None:
    alive = tmp_path / "main.alive"
    mono = Clock(0.0)
    run = RunLiveness(alive, mono=mono)
    assert run.observe() == (0.0, None)
    beat(alive)
    st = alive.stat()
    mono.now = 1.0
    assert run.observe() == (1.0, 0.0)
    mark_alive(alive)
    os.utime(alive, ns=(st.st_atime_ns, st.st_mtime_ns))  # the very same file time
    mono.now = 2.0
    assert run.observe() == (2.0, 0.0), "the content changed: a sign of life"
    mono.now = 3.5
    assert run.observe() == (3.5, 1.5)


async def test_the_time_since_the_commit_comes_from_the_monotonic_clock(
    layout: AgentLayout, tmp_path: Path
) -> None:
    mono = Clock(100.0)
    files = await armed(layout, tmp_path / "run", mono)
    mono.now = 130.0
    assert await files.since_commit(U1) == 30.0
    assert await files.since_commit(UpgradeId("u-other")) is None


def test_elapsed_is_unknown_after_a_reboot_or_from_an_older_note() -> None:
    note = WatchNote(
        upgrade_id=U1,
        previous=OLD,
        target=NEW,
        committed_at=T0,
        window_s=60.0,
        max_failures=3,
        stale_after_s=5.0,
        committed_mono=100.0,
        boot_id="boot-a",
    )
    assert note.elapsed(mono=130.0, boot_id="boot-a") == 30.0
    assert note.elapsed(mono=130.0, boot_id="boot-b") is None
    assert (
        msgspec.structs.replace(note, committed_mono=None).elapsed(mono=130.0, boot_id="boot-a")
        is None
    )
    assert boot_id() is not None, "Linux names every boot"


def committed() -> LocalState:
    record = InFlight(
        marker=marker(), from_version=OLD, state=UpgradeState.COMMITTED, committed_at=T_COMMIT
    )
    return LocalState(finished=(U1,), in_flight=record)


@pytest.mark.parametrize("step", [STEP_S, -STEP_S])
async def test_a_wall_clock_step_neither_ends_nor_stretches_the_new_mains_window(
    step: float,
) -> None:
    rig = rig_with(committed(), running=NEW, since_commit_s=5.0)
    rig.clock.step_wall(step)  # the board's clock was corrected between commit and restart
    try:
        await rig.driver.resume_after_restart()
        await until(rig.sink.wait_for_phase(P.COMMITTED))
        await until(rig.clock.wait_for_pending())
        rig.clock.step_wall(step)  # and once more inside the window
        rig.clock.advance(TIMEOUTS.watch_s - 5.0 + WATCH_SETTLE_S - 0.1)
        await asyncio.sleep(0)
        assert rig.sink.latest is not None and rig.sink.latest.phase is P.COMMITTED
        rig.clock.advance(0.1)
        await until(rig.sink.wait_for_phase(P.SUCCEEDED))
    finally:
        await rig.driver.close()
