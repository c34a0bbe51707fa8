"""Candidates as real detached agent processes: start, watch, stop, crash, and find again after
the agent that started them is gone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
from proc_support import CRASHES, DEVICE, NEW, OLD, Built, alive, install
from proc_support import marker as make_marker
from tests.helpers import eventually

from conftest import ProcDevice
from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.contracts import HEARTBEAT, Heartbeat, Role, subjects
from harmony_fleet.contracts.ids import UpgradeId

URL = "http://127.0.0.1:9/unused"


@pytest.fixture
async def heartbeats(nc: NatsClient) -> AsyncIterator[list[Heartbeat]]:
    seen: list[Heartbeat] = []

    async def on_beat(msg: object) -> None:
        seen.append(HEARTBEAT.decode(msg.data))  # type: ignore[attr-defined]

    sub = await nc.subscribe(subjects.heartbeat(DEVICE), cb=on_beat)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


def start_time_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


async def test_candidate_runs_detached_beats_and_stops_with_its_log_kept(
    device: ProcDevice,
    layout: AgentLayout,
    artifact: Callable[[str], Built],
    heartbeats: list[Heartbeat],
) -> None:
    install(layout, artifact(NEW))
    marker = make_marker(artifact(NEW), URL, uid="u-life")

    handle = await device.runner.start_candidate(marker)
    pid = int(handle.ref)

    record = json.loads(device.runner.pid_file("u-life").path.read_text())
    assert (record["pid"], record["start_time"]) == (pid, start_time_of(pid))
    assert os.getsid(pid) == pid, "a candidate leads its own session (detached)"
    assert alive(int(handle.ref))
    assert (await device.runner.start_candidate(marker)).ref == handle.ref, (
        "idempotent: no second one"
    )
    beat = await eventually(
        lambda: next((h for h in heartbeats if h.agent_version == NEW), None),
        timeout=30,
        what="the candidate's heartbeat",
    )
    assert beat.role is Role.CANDIDATE
    assert beat.upgrade_id == "u-life"
    assert layout.current_version() == OLD

    watch = asyncio.create_task(device.runner.candidate_exit(handle))  # as the driver watches it
    outcome = await device.runner.stop_candidate(UpgradeId("u-life"))

    assert outcome is not None
    assert outcome.exit_code == 0, outcome  # the agent shuts down cleanly on SIGTERM
    assert (await asyncio.wait_for(watch, 10)).exit_code == 0
    assert any("agent stopped" in line for line in outcome.log_tail), outcome.log_tail
    assert not alive(pid)
    assert not alive(int(handle.ref))
    assert not device.runner.pid_file("u-life").path.exists()
    assert "agent starting" in device.runner.candidate_log("u-life").read_text()
    assert await device.runner.stop_candidate(UpgradeId("u-life")) is None


async def test_crashing_candidate_exit_code_and_last_lines(
    device: ProcDevice, layout: AgentLayout, artifact: Callable[[str], Built]
) -> None:
    install(layout, artifact(CRASHES))
    handle = await device.runner.start_candidate(make_marker(artifact(CRASHES), URL, uid="u-crash"))

    outcome = await asyncio.wait_for(device.runner.candidate_exit(handle), 60)

    assert outcome.exit_code == 3
    assert any("build fault: crashing" in line for line in outcome.log_tail), outcome.log_tail
    assert not alive(int(handle.ref))
    assert await device.runner.stop_candidate(UpgradeId("u-crash")) is None


ORPHAN_MAKER = """
import asyncio, json, sys
from pathlib import Path
import msgspec
from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.process.runner import ProcessRunner
from harmony_fleet.contracts import UpgradeMarker

cfg = json.loads(sys.argv[1])

async def main():
    launch = LaunchSpec(device_id=cfg["device"], state_dir=Path(cfg["state_dir"]),
                        nats_args=tuple(cfg["nats_args"]), extra_args=tuple(cfg["extra_args"]))
    ex = ProcessRunner(AgentLayout(Path(cfg["prefix"])), launch, run_dir=Path(cfg["run_dir"]),
                       env=cfg["env"])
    handle = await ex.start_candidate(msgspec.json.decode(cfg["marker"], type=UpgradeMarker))
    print(handle.ref, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_restarted_agent_stops_the_orphan_candidate_by_upgrade_id(
    make_device: Callable[..., ProcDevice],
    layout: AgentLayout,
    launch: LaunchSpec,
    run_dir: Path,
    extract_dir: Path,
    artifact: Callable[[str], Built],
    heartbeats: list[Heartbeat],
) -> None:
    install(layout, artifact(NEW))
    marker = make_marker(artifact(NEW), URL, uid="u-orphan")
    cfg = {
        "device": launch.device_id,
        "state_dir": str(launch.state_dir),
        "nats_args": list(launch.nats_args),
        "extra_args": list(launch.extra_args),
        "prefix": str(layout.prefix),
        "run_dir": str(run_dir),
        "running": OLD,
        "env": {"HARMONY_FLEET_EXTRACT_DIR": str(extract_dir)},
        "marker": msgspec.json.encode(marker).decode(),
    }
    old_agent = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-c", ORPHAN_MAKER, json.dumps(cfg)],
        stdout=subprocess.PIPE,
    )
    try:
        assert old_agent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(old_agent.stdout.readline), 60)
        pid = int(line)
        await eventually(
            lambda: any(h.upgrade_id == "u-orphan" for h in heartbeats),
            timeout=30,
            what="the candidate's heartbeat",
        )
    finally:
        old_agent.kill()  # the old agent dies without any cleanup
        old_agent.wait()
        if old_agent.stdout is not None:
            old_agent.stdout.close()
    assert alive(pid), "the candidate outlives the agent that started it"

    restarted = make_device()  # a new process knows only what is on disk
    adopted = await restarted.runner.start_candidate(marker)  # finds it: no second one
    assert adopted.ref == str(pid)

    outcome = await restarted.runner.stop_candidate(UpgradeId("u-orphan"))

    assert outcome is not None
    assert outcome.exit_code is None, "not our child: its exit code cannot be known"
    assert "exit code unknown" in outcome.log_tail[-1]
    assert any("agent stopped" in line for line in outcome.log_tail), outcome.log_tail
    assert not alive(pid)
    assert not restarted.runner.pid_file("u-orphan").path.exists()


async def test_a_candidate_whose_pid_file_was_never_written_is_found_by_its_command_line(
    device: ProcDevice,
    make_device: Callable[..., ProcDevice],
    layout: AgentLayout,
    artifact: Callable[[str], Built],
    heartbeats: list[Heartbeat],
) -> None:
    install(layout, artifact(NEW))
    handle = await device.runner.start_candidate(make_marker(artifact(NEW), URL, uid="u-nopid"))
    device.runner.pid_file(
        "u-nopid"
    ).path.unlink()  # as if the agent died between spawn and pid file
    await eventually(
        lambda: any(h.upgrade_id == "u-nopid" for h in heartbeats), timeout=30, what="a beat"
    )

    restarted = make_device()
    adopted = await restarted.runner.start_candidate(make_marker(artifact(NEW), URL, uid="u-nopid"))
    assert adopted.ref == handle.ref, "found by its command line: no second one"
    outcome = await restarted.runner.stop_candidate(UpgradeId("u-nopid"))

    assert outcome is not None
    assert not alive(int(handle.ref))
    owner_view = await asyncio.wait_for(device.runner.candidate_exit(handle), 10)
    assert owner_view.exit_code == 0, "the process that started it still learns its exit code"


async def test_a_pid_file_naming_a_reused_pid_is_not_trusted(
    device: ProcDevice, run_dir: Path
) -> None:
    bystander = await asyncio.to_thread(subprocess.Popen, ["sleep", "60"])
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        forged = {"pid": bystander.pid, "start_time": start_time_of(bystander.pid) - 1}
        device.runner.pid_file("u-reused").path.write_text(json.dumps(forged))
        assert await device.runner.stop_candidate(UpgradeId("u-reused")) is None
        assert bystander.poll() is None, "an unrelated process with a recycled pid is untouched"
        assert not device.runner.pid_file("u-reused").path.exists(), "the stale pid file is dropped"
    finally:
        bystander.kill()
        bystander.wait()
