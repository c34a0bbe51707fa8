"""An idle agent carries only what it runs: the modules of a real agent process, listed at exit.

The agent runs as a device runs it: ``fleet``'s entry with ``agent run``, an upgradable main
(``--prefix``, a pinned trust root, the process executor), its own device credentials, log
shipping on. It heartbeats a few times, is stopped with SIGTERM, and writes ``sys.modules`` on its
way out. The CLI framework, rich, the HTTP client (until a download starts), python-tuf and its
crypto (until a release is verified), Kubernetes code and aiohttp (nats-py imports it whenever it
is installed; the agent has no use for it) must not be among them: each one is megabytes of an
idle agent's memory and part of every start (docs/agent.md, "Footprint").
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.helpers import eventually, stop_process

from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import device_id, subjects
from harmony_fleet.testing.signed_repo import Repo

HEAVY = (
    *("click", "rich", "pygments", "markdown_it"),
    *("httpx", "httpcore", "anyio", "h11", "certifi"),
    *("aiohttp", "yarl", "multidict"),
    *("kubernetes_asyncio", "kopf", "yaml"),
    *("tuf", "securesystemslib", "urllib3", "cryptography"),
    *("harmony_fleet.cli.main", "harmony_fleet.operator", "harmony_fleet.adapters.http.downloader"),
)

#: Runs ``fleet`` (its console-script entry) and writes the loaded modules' names at exit.
LIST_MODULES_AT_EXIT = """
import atexit, json, sys
out = sys.argv.pop(1)
loaded = lambda: sorted(name for name, module in sys.modules.items() if module is not None)
atexit.register(lambda: open(out, "w").write(json.dumps(loaded())))
from harmony_fleet.cli.entry import main
main()
"""


def _loaded(modules: Iterable[str], name: str) -> bool:
    return any(m == name or m.startswith(name + ".") for m in modules)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


async def _modules_of_an_agent(
    server: EmbeddedNats, tmp_path: Path, name: str, beats_wanted: int, *args: str
) -> set[str]:
    """Run ``fleet agent run`` as device ``name`` (``args`` added) until it sent
    ``beats_wanted`` heartbeats, stop it; the modules it had loaded when it exited."""
    creds = server.issue("device", name, tmp_path / f"{name}.creds")
    out = tmp_path / "modules.json"
    argv = [sys.executable, "-c", LIST_MODULES_AT_EXIT, str(out), "agent", "run"]
    argv += ["--device-id", name, "--state-dir", str(tmp_path / "state")]
    argv += ["--nats", server.url, "--nats-creds", str(creds)]
    argv += ["--nats-tls-ca", str(server.auth.ca_file), "--heartbeat-interval", "0.2"]
    argv += ["--prefix", str(tmp_path / "opt"), "--executor", "process", "--log-json", *args]
    nc = await connect(server.client_options())
    beats: list[bytes] = []
    try:

        async def on_beat(msg: object) -> None:
            beats.append(msg.data)  # type: ignore[attr-defined]

        await nc.subscribe(subjects.heartbeat(name), cb=on_beat)
        proc = _start(argv, tmp_path / "agent.log")
        try:
            await eventually(
                lambda: len(beats) >= beats_wanted, timeout=30, what=f"{beats_wanted} heartbeats"
            )
        finally:
            code = stop_process(proc)
    finally:
        await nc.close()
    assert code == 0, (tmp_path / "agent.log").read_text()
    modules = set(json.loads(out.read_text()))
    assert "harmony_fleet.agent.runtime" in modules  # it was the agent that ran
    return modules


async def test_an_idle_agent_loads_no_heavy_module(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(Repo().root_json())
    modules = await _modules_of_an_agent(
        nats_server, tmp_path, "lean-1", 5, "--trust-root", str(root)
    )
    assert [name for name in HEAVY if _loaded(modules, name)] == []


async def test_an_agent_is_not_sent_its_own_heartbeats(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """The main listens on its device's heartbeat subject for its candidates; without
    ``no_echo`` each of its own beats came back to it, to be read, decoded and dropped."""
    config = AgentConfig(
        device_id=device_id("echo-1"),
        state_dir=tmp_path / "state",
        nats=nats_server.client_options(),
        heartbeat_interval_s=0.1,
    )
    agent = Agent(config)
    run = asyncio.create_task(agent.run())
    outside = await connect(nats_server.client_options())
    own: list[bytes] = []
    seen: list[bytes] = []

    async def on_own(msg: Any) -> None:
        own.append(msg.data)

    async def on_seen(msg: Any) -> None:
        seen.append(msg.data)

    try:
        await outside.subscribe(subjects.heartbeat("echo-1"), cb=on_seen)
        await eventually(agent.connected.is_set, timeout=15, what="agent connected")
        assert agent.nc is not None
        await agent.nc.subscribe(subjects.heartbeat("echo-1"), cb=on_own)
        await agent.nc.flush()
        mark = len(seen)
        await eventually(lambda: len(seen) >= mark + 3, timeout=15, what="three more heartbeats")
        await agent.nc.flush()
    finally:
        agent.request_exit(0)
        assert await asyncio.wait_for(run, 15) == 0
        await outside.close()
    assert own == []


#: What only an upgradable main runs: a candidate, which every upgrade starts and waits for,
#: imports none of it.
UPGRADER = (
    *("harmony_fleet.agent.build", "harmony_fleet.agent.upgrade"),
    *("harmony_fleet.adapters.device.files", "harmony_fleet.adapters.tuf"),
)


async def test_a_candidate_loads_no_upgrade_machinery(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    modules = await _modules_of_an_agent(
        nats_server, tmp_path, "lean-2", 3, "--role", "candidate", "--upgrade-id", "u1"
    )
    assert [name for name in (*HEAVY, *UPGRADER) if _loaded(modules, name)] == []


async def test_extensions_start_after_the_first_heartbeat(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """What the extensions import and open (upgrades, log shipping) never delays the first
    heartbeat, which a candidate's upgrade waits for."""
    config = AgentConfig(
        device_id=device_id("first-1"),
        state_dir=tmp_path / "state",
        nats=nats_server.client_options(),
        heartbeat_interval_s=5.0,
    )
    agent = Agent(config)
    at_start: list[tuple[int, int]] = []  # (heartbeats sent, bytes not yet written to NATS)

    async def extension(started: Agent, nc: Any) -> None:
        at_start.append((started.sent, nc.pending_data_size))

    agent.add_extension(extension)
    run = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: at_start != [], timeout=15, what="the extension started")
    finally:
        agent.request_exit(0)
        assert await asyncio.wait_for(run, 15) == 0
    assert at_start == [(1, 0)], "the first heartbeat is on its way before any extension runs"
