"""The post-commit watch on real files: the launcher's watcher (counts that survive it, the
crash loop, silence, a rollback note written before ``current`` moves back, an interrupted
rollback finished) and the agent's side (notes armed and ended per upgrade). One fake clock
stands for ``CLOCK_MONOTONIC``, shared by both sides as the real one is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.device.notes import (
    FAILURES_FILE,
    LIVENESS_WIDTH,
    ROLLBACK_FILE,
    WATCH_FILE,
    liveness_file,
    mark_alive,
    read_rollback,
    read_watch,
)
from harmony_fleet.adapters.device.watcher import PostCommitWatcher
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.watch import WatchReason

OLD, NEW = Version("1.0.0"), Version("2.0.0")
U1 = UpgradeId("u1")
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0 + 1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def layout(tmp_path: Path) -> AgentLayout:
    lay = AgentLayout(tmp_path / "opt")
    for v in (OLD, NEW):
        lay.version_dir(v).mkdir(parents=True)
        (lay.version_dir(v) / "agent").write_text(v)
    lay.swap_current(NEW)  # just committed
    return lay


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "run"


async def arm(layout: AgentLayout, run_dir: Path, **plan: object) -> AgentFiles:
    files = AgentFiles(
        layout,
        running_version=NEW,
        run_dir=run_dir,
        stale_after_s=5.0,
        watched=True,
        mono=Clock(T0),
    )
    fields: dict[str, object] = {
        "upgrade_id": U1,
        "previous": OLD,
        "target": NEW,
        "committed_at": T0,
        "window_s": 20.0,
        "max_failures": 3,
        **plan,
    }
    await files.arm_watch(WatchPlan(**fields))  # type: ignore[arg-type]
    return files


def watcher(layout: AgentLayout, run_dir: Path, clock: Clock) -> PostCommitWatcher:
    return PostCommitWatcher(
        layout, run_dir, log_tail=lambda: ("line 1", "boom"), clock=clock, mono=clock
    )


async def test_a_crash_loop_rolls_back_with_the_note_first(
    layout: AgentLayout, run_dir: Path
) -> None:
    await arm(layout, run_dir)
    clock = Clock()
    w = watcher(layout, run_dir, clock)
    assert w.on_exit(NEW, 3, None, stopping=False) is None
    # The count is on disk: a restarted launcher goes on from it.
    w = watcher(layout, run_dir, clock)
    assert w.on_exit(NEW, None, "SIGSEGV", stopping=False) is None
    clock.now = T0 + 9
    done = w.on_exit(NEW, 3, None, stopping=False)
    assert done is not None and done.reason is WatchReason.CRASH_LOOP
    assert done.exit_codes == (3, None, 3) and done.exit_code == 3
    assert done.log_tail == ("line 1", "boom")
    assert "failed 3 times within 9 s" in done.detail
    assert layout.current_version() == OLD
    assert read_rollback(run_dir) == done
    # Settled: the same window never rolls back twice.
    assert w.watching(NEW) is None and w.on_exit(NEW, 3, None, stopping=False) is None


@pytest.mark.parametrize(
    ("version", "code", "signal", "stopping", "now"),
    [
        (NEW, 0, None, False, T0 + 1),  # a clean exit
        (NEW, 3, None, True, T0 + 1),  # the launcher itself was stopping it
        (OLD, 3, None, False, T0 + 1),  # not the watched version (the old main handing over)
    ],
)
async def test_exits_that_do_not_count(
    layout: AgentLayout,
    run_dir: Path,
    version: Version,
    code: int | None,
    signal: str | None,
    stopping: bool,
    now: float,
) -> None:
    await arm(layout, run_dir, max_failures=1)
    clock = Clock()
    clock.now = now
    w = watcher(layout, run_dir, clock)
    assert w.on_exit(version, code, signal, stopping=stopping) is None
    assert layout.current_version() == NEW
    assert not (run_dir / FAILURES_FILE).exists()


async def test_silence_stops_the_main_and_rolls_back(layout: AgentLayout, run_dir: Path) -> None:
    await arm(layout, run_dir)
    clock = Clock()
    w = watcher(layout, run_dir, clock)
    alive = liveness_file(run_dir)
    mark_alive(alive)  # the old main's last tick: no proof about the new run
    run = w.run_liveness()  # made just before the launcher starts the run
    clock.now = T0 + 2
    mark_alive(alive)  # the new run's first heartbeat tick, then nothing
    assert w.silent(NEW, run) is None
    clock.now = T0 + 6.5
    assert w.silent(NEW, run) is None
    clock.now = T0 + 7.5
    detail = w.silent(NEW, run)
    assert detail is not None and "no heartbeat" in detail
    done = w.on_exit(NEW, 0, None, stopping=False)  # it answered SIGTERM cleanly
    assert done is not None and done.reason is WatchReason.NO_HEARTBEAT
    assert done.exit_codes == (0,)
    assert layout.current_version() == OLD


async def test_a_rollback_interrupted_after_its_note_is_finished_before_the_next_start(
    layout: AgentLayout, run_dir: Path
) -> None:
    await arm(layout, run_dir, max_failures=1)
    w = watcher(layout, run_dir, Clock())
    assert w.on_exit(NEW, 3, None, stopping=False) is not None
    layout.swap_current(NEW)  # as if the launcher died between its note and its swap
    watcher(layout, run_dir, Clock()).settle()
    assert layout.current_version() == OLD


async def test_no_rollback_without_a_previous_version_to_return_to(
    layout: AgentLayout, run_dir: Path
) -> None:
    await arm(layout, run_dir, max_failures=1)
    (layout.version_dir(OLD) / "agent").unlink()
    layout.version_dir(OLD).rmdir()
    w = watcher(layout, run_dir, Clock())
    assert w.on_exit(NEW, 3, None, stopping=False) is None
    assert layout.current_version() == NEW and not (run_dir / ROLLBACK_FILE).exists()
    assert w.watching(NEW) is None, "given up: it is not judged again"


async def test_the_agent_arms_and_ends_only_its_own_watch(
    layout: AgentLayout, run_dir: Path
) -> None:
    files = await arm(layout, run_dir, max_failures=1)
    note = read_watch(run_dir)
    assert note is not None and note.stale_after_s == 5.0 and note.ends_at == T0 + 20
    assert watcher(layout, run_dir, Clock()).on_exit(NEW, 3, None, stopping=False)
    assert await files.rollback_note() is not None
    await files.end_watch(UpgradeId("someone-else"))
    assert (run_dir / WATCH_FILE).exists() and (run_dir / ROLLBACK_FILE).exists()
    await files.end_watch(U1)
    assert not any(run_dir.glob("post-commit*")), sorted(p.name for p in run_dir.iterdir())
    assert await files.artifact_sha256(OLD) is not None
    assert await files.artifact_sha256(Version("9.9.9")) is None


async def test_the_watch_goes_on_after_the_window_until_the_new_main_ends_it(
    layout: AgentLayout, run_dir: Path
) -> None:
    """A crash loop slower than the window is still caught: only Succeeded ends the watch."""
    files = await arm(layout, run_dir, max_failures=2)
    clock = Clock()
    clock.now = T0 + 25  # the window (20 s) has passed, the new main never ended the watch
    w = watcher(layout, run_dir, clock)
    assert w.on_exit(NEW, 3, None, stopping=False) is None
    assert w.on_exit(NEW, 3, None, stopping=False) is not None
    assert layout.current_version() == OLD
    # Once the new main ended it (Succeeded), nothing is judged any more.
    layout.swap_current(NEW)
    await files.end_watch(U1)
    assert w.watching(NEW) is None and w.on_exit(NEW, 3, None, stopping=False) is None


async def test_a_corrupt_note_counts_as_absent(layout: AgentLayout, run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / WATCH_FILE).write_text("{not json")
    w = watcher(layout, run_dir, Clock())
    assert w.watching(NEW) is None and w.on_exit(NEW, 3, None, stopping=False) is None


def test_each_tick_overwrites_the_liveness_file_in_place_at_a_fixed_width(tmp_path: Path) -> None:
    alive = liveness_file(tmp_path / "run")  # the run dir is made by the first tick
    mark_alive(alive)
    first, inode = alive.read_bytes(), alive.stat().st_ino
    mark_alive(alive)
    second = alive.read_bytes()
    assert len(first) == len(second) == LIVENESS_WIDTH
    assert first != second, "every tick changes the content"
    assert alive.stat().st_ino == inode
    assert int(second.split()[0]) == os.getpid()
