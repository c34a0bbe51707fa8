"""The process-mode supervisor judging a watched main's liveness with real processes: a slow
first start is not a silence, the liveness file's time (which a wall-clock step moves) is never
compared with a clock, and a main that stops beating is still rolled back.

The "mains" are small scripts standing in for agent artifacts: they rewrite ``main.alive``
the way the agent does, after a delay, with the file's time shifted by ten minutes (what an
NTP step does to it), or not at all after a few ticks.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.helpers import eventually

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.notes import RUN_DIR, WATCH_FILE, liveness_file, write
from harmony_fleet.adapters.process.supervisor import Supervisor
from harmony_fleet.contracts.device_files import WatchNote, WatchReason
from harmony_fleet.contracts.ids import UpgradeId, Version

OLD, NEW = Version("1.0.0"), Version("2.0.0")
U1 = UpgradeId("u-live")

MAIN = """
import os, sys, time
from pathlib import Path
alive = Path({alive!r})
time.sleep({delay})
tick = 0
while True:
    tick += 1
    if {stop_after} and tick > {stop_after}:
        time.sleep(3600)  # alive, but no longer beating
    alive.parent.mkdir(parents=True, exist_ok=True)
    alive.write_text(f"{{os.getpid()}} {{tick}}\\n")
    if {shift}:
        st = alive.stat()
        os.utime(alive, (st.st_atime + {shift}, st.st_mtime + {shift}))
    time.sleep(0.1)
"""


def install(
    layout: AgentLayout,
    v: Version,
    alive: Path,
    *,
    delay: float = 0.0,
    shift: float = 0.0,
    stop_after: int = 0,
) -> None:
    home = layout.version_dir(v)
    home.mkdir(parents=True, exist_ok=True)
    script = MAIN.format(alive=str(alive), delay=delay, shift=shift, stop_after=stop_after)
    (home / "agent").write_text(script)


def ticks(alive: Path) -> int:
    try:
        return int(alive.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def layout(tmp_path: Path, state: Path) -> AgentLayout:
    lay = AgentLayout(tmp_path / "prefix")
    install(lay, OLD, liveness_file(state / RUN_DIR))
    return lay


def arm(state: Path) -> None:
    """The watch note an old agent leaves at its commit, with tight bounds (as an older agent
    could write them): 1 s of liveness, 1 s of start grace."""
    note = WatchNote(
        upgrade_id=U1,
        previous=OLD,
        target=NEW,
        committed_at=1.0,
        window_s=600.0,
        max_failures=3,
        stale_after_s=1.0,
        start_grace_s=1.0,
    )
    write(state / RUN_DIR / WATCH_FILE, note)


@pytest.fixture
async def supervise(layout: AgentLayout, state: Path) -> AsyncIterator[Supervisor]:
    launch = LaunchSpec(python=sys.executable, device_id="edge-1", state_dir=state)
    sup = Supervisor(
        layout, launch, run_dir=state / RUN_DIR, watch_poll_s=0.1, backoff_initial_s=0.1
    )
    yield sup
    await sup.stop()


async def test_a_slow_first_start_is_not_rolled_back(
    supervise: Supervisor, layout: AgentLayout, state: Path
) -> None:
    alive = liveness_file(state / RUN_DIR)
    install(layout, NEW, alive, delay=3.0)  # three times the note's start grace
    layout.swap_current(NEW)
    arm(state)
    await supervise.start()
    await eventually(lambda: ticks(alive) >= 20, timeout=30, what="the slow main beating")
    assert supervise.rollbacks == [] and layout.current_version() == NEW
    assert supervise.exit_codes(NEW) == [], "never stopped for a silence"


@pytest.mark.parametrize("shift", [-600.0, 600.0])
async def test_the_files_time_is_no_clock_and_a_real_silence_is_still_caught(
    supervise: Supervisor, layout: AgentLayout, state: Path, shift: float
) -> None:
    alive = liveness_file(state / RUN_DIR)
    # Beats with the file's time ten minutes off (the wall clock stepped), then stops beating.
    install(layout, NEW, alive, shift=shift, stop_after=20)
    layout.swap_current(NEW)
    arm(state)
    await supervise.start()
    await eventually(lambda: ticks(alive) >= 20, timeout=30, what="the main beating")
    assert supervise.rollbacks == [], "a stepped file time is not a silence"
    await eventually(lambda: supervise.rollbacks, timeout=30, what="the silence caught")
    (done,) = supervise.rollbacks
    assert done.reason is WatchReason.NO_HEARTBEAT and "no heartbeat" in done.detail
    assert layout.current_version() == OLD
    await asyncio.wait_for(supervise.wait_started(1, version=OLD), 30)
