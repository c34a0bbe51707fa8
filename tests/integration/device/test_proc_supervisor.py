"""The process-mode supervisor with real agent artifacts: restarts a crashing main, follows
``current`` to the committed version, never leaves two mains, stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from proc_support import CRASHES, DEVICE, NEW, Built, alive, install, live_pids_with
from tests.helpers import eventually

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.process.supervisor import Supervisor
from harmony_fleet.contracts import HEARTBEAT, Heartbeat, Role, subjects
from harmony_fleet.errors import Unavailable


@pytest.fixture
async def heartbeats(nc: NatsClient) -> AsyncIterator[list[Heartbeat]]:
    seen: list[Heartbeat] = []

    async def on_beat(msg: object) -> None:
        seen.append(HEARTBEAT.decode(msg.data))  # type: ignore[attr-defined]

    sub = await nc.subscribe(subjects.heartbeat(DEVICE), cb=on_beat)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


@pytest.fixture
def make_supervisor(
    layout: AgentLayout, launch: LaunchSpec, run_dir: Path, extract_dir: Path
) -> Callable[[], Supervisor]:
    def make() -> Supervisor:
        return Supervisor(
            layout,
            launch,
            run_dir=run_dir,
            backoff_initial_s=0.1,
            backoff_max_s=0.4,
            env={"HARMONY_FLEET_EXTRACT_DIR": str(extract_dir)},
        )

    return make


def main_beat(heartbeats: list[Heartbeat], version: str) -> Heartbeat | None:
    return next((h for h in heartbeats if h.agent_version == version and h.role is Role.MAIN), None)


async def test_restarts_a_crashing_main_then_starts_the_committed_version(
    make_supervisor: Callable[[], Supervisor],
    layout: AgentLayout,
    artifact: Callable[[str], Built],
    heartbeats: list[Heartbeat],
) -> None:
    install(layout, artifact(CRASHES))
    install(layout, artifact(NEW))
    layout.swap_current(CRASHES)
    sup = make_supervisor()
    await sup.start()
    try:
        await asyncio.wait_for(sup.wait_started(3), 60)
        assert sup.restarts >= 2
        codes = sup.exit_codes(CRASHES)
        assert len(codes) >= 2 and set(codes) == {3}, codes
        assert all(r.version == CRASHES and r.exit_code == 3 for r in sup.history)

        layout.swap_current(NEW)  # what the old agent's commit does
        await asyncio.wait_for(sup.wait_started(1, version=NEW), 60)
        await eventually(lambda: main_beat(heartbeats, NEW), timeout=30, what="2.0.0 as main")
        pid = sup.pid
        assert pid is not None and alive(pid)
        assert sup.version == NEW
    finally:
        last = await sup.stop()

    assert not alive(pid)
    assert last is not None and last.version == NEW
    assert last.exit_code == 0, "SIGTERM: the agent shuts down cleanly"
    assert sup.exit_codes(NEW) == [0]
    assert sup.pid is None
    text = (sup.run_dir / "main.log").read_text()
    assert "build fault: crashing" in text
    assert f"supervisor: starting {NEW}" in text
    assert f"supervisor: {CRASHES} (pid" in text and "exited with code 3" in text


async def test_no_current_is_retried_until_there_is_one(
    make_supervisor: Callable[[], Supervisor],
    layout: AgentLayout,
    artifact: Callable[[str], Built],
) -> None:
    install(layout, artifact(NEW))
    layout.current_link.unlink()
    sup = make_supervisor()
    await sup.start()
    try:
        await eventually(lambda: sup.failed_starts >= 2, timeout=10, what="failed starts")
        assert sup.starts == 0
        assert "current" in sup.last_error
        layout.swap_current(NEW)
        await asyncio.wait_for(sup.wait_started(1, version=NEW), 60)
    finally:
        await sup.stop()


KILLED_SUPERVISOR = """
import asyncio, json, sys
from pathlib import Path
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.process.supervisor import Supervisor
from harmony_fleet.adapters.device import AgentLayout

cfg = json.loads(sys.argv[1])

async def main():
    launch = LaunchSpec(device_id=cfg["device"], state_dir=Path(cfg["state_dir"]),
                        nats_args=tuple(cfg["nats_args"]), extra_args=tuple(cfg["extra_args"]))
    sup = Supervisor(AgentLayout(Path(cfg["prefix"])), launch, run_dir=Path(cfg["run_dir"]),
                     env=cfg["env"])
    await sup.start()
    await sup.wait_started(1)
    print(sup.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_main_left_by_a_killed_supervisor_is_stopped_before_a_new_one_starts(
    make_supervisor: Callable[[], Supervisor],
    layout: AgentLayout,
    launch: LaunchSpec,
    run_dir: Path,
    extract_dir: Path,
    artifact: Callable[[str], Built],
    heartbeats: list[Heartbeat],
) -> None:
    install(layout, artifact(NEW))
    layout.swap_current(NEW)
    cfg = {
        "device": launch.device_id,
        "state_dir": str(launch.state_dir),
        "nats_args": list(launch.nats_args),
        "extra_args": list(launch.extra_args),
        "prefix": str(layout.prefix),
        "run_dir": str(run_dir),
        "env": {"HARMONY_FLEET_EXTRACT_DIR": str(extract_dir)},
    }
    first = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", KILLED_SUPERVISOR, json.dumps(cfg)],
        stdout=subprocess.PIPE,
    )
    try:
        assert first.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(first.stdout.readline), 60)
        stale = int(line)
        await eventually(lambda: main_beat(heartbeats, NEW), timeout=30, what="the first main")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        if first.stdout is not None:
            first.stdout.close()
    assert alive(stale), "the main survives its supervisor's SIGKILL"

    sup = make_supervisor()
    await sup.start()
    try:
        await asyncio.wait_for(sup.wait_started(1), 60)
        assert not alive(stale)
        agent = str(layout.version_dir(NEW) / "agent")
        assert live_pids_with(agent) == [sup.pid], "exactly one main"
    finally:
        await sup.stop()


async def test_waiting_on_a_supervisor_that_is_not_running_fails_at_once(
    make_supervisor: Callable[[], Supervisor],
) -> None:
    sup = make_supervisor()
    with pytest.raises(Unavailable):
        await asyncio.wait_for(sup.wait_started(1), 5)
    assert await sup.stop() is None
