"""Agents, operator and CLI against a real nats-server (issue 2 acceptance)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.helpers import eventually, run_fleet, start_agent_process, stop_process

from harmony_fleet._version import __version__
from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.cli.devices import load_devices
from harmony_fleet.contracts import (
    DeviceRecord,
    PingArgs,
    Verb,
    device_id,
    encode,
    new_command,
    subjects,
)
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.runtime import Operator, OperatorConfig


def make_operator(options: NatsOptions) -> Operator:
    return Operator(
        OperatorConfig(
            nats=options,
            presence=PresencePolicy(missed=3, grace_s=0.5, refresh_s=2.0),
            flush_interval_s=0.1,
            # These devices publish with the admin's credentials, never issued their own:
            # admission is tests/security/test_admission.py's subject.
            admit=Admit.ANY,
        )
    )


@contextlib.asynccontextmanager
async def running(operator: Operator) -> AsyncIterator[Operator]:
    task = asyncio.ensure_future(operator.run())
    try:
        await asyncio.wait_for(operator.ready.wait(), 15)
        yield operator
    finally:
        operator.stop.set()
        await asyncio.wait_for(task, 15)


def agent(device: str, options: NatsOptions, tmp: Path, interval: float = 0.3) -> Agent:
    return Agent(
        AgentConfig(
            device_id=device_id(device),
            state_dir=tmp / device,
            nats=options,
            heartbeat_interval_s=interval,
        )
    )


@contextlib.asynccontextmanager
async def running_agent(a: Agent) -> AsyncIterator[Agent]:
    task = asyncio.ensure_future(a.run())
    try:
        yield a
    finally:
        a.request_exit(0)
        assert await asyncio.wait_for(task, 10) == 0


def cli_devices(url: str) -> list[dict[str, object]]:
    """``fleet devices --json`` as a real process (once per test: a process costs ~1 s)."""
    out = run_fleet("devices", "--json", "--nats", url)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


async def listed_devices(options: NatsOptions) -> list[DeviceRecord]:
    """What ``fleet devices`` lists, read in this process (the command's own loader)."""
    records, bad = await load_devices(options)
    assert bad == 0
    return records


async def test_agent_processes_register_and_devices_json_lists_them(
    nats_server: EmbeddedNats, nats_options: NatsOptions, tmp_path: Path
) -> None:
    procs = [start_agent_process(f"edge-{i}", nats_server.url, tmp_path) for i in range(3)]
    try:
        async with running(make_operator(nats_options)):

            async def listed() -> bool:
                devices = await listed_devices(nats_options)
                return len(devices) == 3 and all(d.online for d in devices)

            await eventually(listed, timeout=20, what="3 devices online in `fleet devices`")
            devices = cli_devices(nats_server.url)  # the real command, once
            assert [d["device_id"] for d in devices] == ["edge-0", "edge-1", "edge-2"]
            assert {d["current_version"] for d in devices} == {__version__}
            assert all(d["online"] for d in devices)
            # Stop one agent: it goes offline within missed * interval + grace.
            assert stop_process(procs[1]) == 0

            async def edge_1_offline() -> bool:
                return [d.online for d in await listed_devices(nats_options)] == [
                    True,
                    False,
                    True,
                ]

            await eventually(edge_1_offline, timeout=10, what="edge-1 offline")
    finally:
        for p in procs:
            stop_process(p)


async def test_operator_restart_keeps_the_registry(
    nats_options: NatsOptions, tmp_path: Path
) -> None:
    async with running_agent(agent("edge-a", nats_options, tmp_path)):
        async with running(make_operator(nats_options)) as op:
            await eventually(lambda: op.writes >= 1, what="first registry write")
            first_seen = op.registry.devices["edge-a"].first_seen
        fresh = make_operator(nats_options)
        async with running(fresh):
            state = fresh.registry.devices.get("edge-a")
            assert state is not None, "the restarted operator lost the device"
            assert state.first_seen == first_seen
            await eventually(lambda: fresh.registry.ingested > 0, what="ingest after restart")
            assert fresh.registry.devices["edge-a"].online


async def test_nats_restart_under_running_agents_and_operator(
    nats_server: EmbeddedNats, nats_options: NatsOptions, tmp_path: Path
) -> None:
    a = agent("edge-r", nats_options, tmp_path, interval=0.2)
    async with running_agent(a), running(make_operator(nats_options)) as op:
        await eventually(lambda: "edge-r" in op.registry.devices, what="registered")
        nats_server.stop()
        before = op.registry.ingested
        nats_server.start()
        await eventually(
            lambda: op.registry.ingested > before + 2,
            timeout=20,
            what="heartbeats flowing again after the NATS restart",
        )
        writes = op.writes
        op.registry.devices["edge-r"].dirty = True
        await eventually(lambda: op.writes > writes, timeout=20, what="KV writes after restart")
        assert op.registry.devices["edge-r"].online
        assert a.sent > 0 and a.connected.is_set()


async def test_agent_started_before_nats_exists_connects_when_it_appears(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "late")
    server.start()
    server.stop()  # a free port learnt and the credentials made, then the server taken away
    options = server.client_options(reconnect_wait_s=0.2)
    a = agent("edge-late", options, tmp_path, interval=0.2)
    task = asyncio.ensure_future(a.run())
    try:
        await asyncio.sleep(0)  # let it try and fail at least once
        await eventually(lambda: a.skipped >= 0 and not a.connected.is_set(), what="not yet")
        server.start()
        await eventually(a.connected.is_set, timeout=20, what="agent connected once NATS is up")
        await eventually(lambda: a.sent > 0, what="first heartbeat")
        assert a.connected.is_set()
        assert a.nc is not None and a.nc.is_connected
    finally:
        a.request_exit(0)
        await asyncio.wait_for(task, 10)
        server.stop()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{not json",
        b"[]",
        b"x" * 70_000,
        b'{"device_id":"edge-m"}',
        b'{"v":1,"device_id":"edge-m","instance_id":"zz","agent_version":"1","role":"main",'
        b'"seq":1,"sent_at":1,"uptime_s":1}',
    ],
)
async def test_malformed_heartbeats_are_dropped_and_the_operator_keeps_going(
    payload: bytes, nc: NatsClient, nats_options: NatsOptions, tmp_path: Path
) -> None:
    async with running(make_operator(nats_options)) as op:
        await nc.publish(subjects.heartbeat("edge-m"), payload)
        await nc.flush()
        await eventually(
            lambda: op.registry.rejected >= 1, timeout=10, what="the bad heartbeat rejected"
        )
        assert op.registry.rejected == 1, op.registry.rejected
        async with running_agent(agent("edge-ok", nats_options, tmp_path)):
            await eventually(lambda: "edge-ok" in op.registry.devices, what="still ingesting")
        assert "edge-m" not in op.registry.devices


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "invalid"),
        (b"garbage", "invalid"),
        (b"x" * 70_000, "invalid"),
        (b'{"command_id":"c","verb":"reboot","issued_at":1,"expires_at":9e9}', "unknown_verb"),
    ],
)
async def test_malformed_commands_get_a_clear_reply_and_the_agent_keeps_running(
    payload: bytes, code: str, nc: NatsClient, nats_options: NatsOptions, tmp_path: Path
) -> None:
    a = agent("edge-c", nats_options, tmp_path)
    async with running_agent(a):
        await eventually(a.connected.is_set, what="agent connected")
        msg = await nc.request(subjects.command("edge-c"), payload, timeout=5)
        assert json.loads(msg.data)["code"] == code
        assert a.commands.rejected == 1
        ping = await nc.request(subjects.command("edge-c"), _ping(), timeout=5)
        assert json.loads(ping.data)["ok"] is True


def _ping() -> bytes:
    return encode(new_command(Verb.PING, PingArgs(), now=time.time(), ttl_s=5))


async def test_fleet_ping_cli(
    nats_server: EmbeddedNats, nats_options: NatsOptions, tmp_path: Path
) -> None:
    a = agent("edge-p", nats_options, tmp_path)
    async with running_agent(a):
        await eventually(a.connected.is_set, what="agent connected")
        out = await asyncio.to_thread(
            run_fleet, "ping", "edge-p", "--json", "--nats", nats_server.url
        )
        assert out.returncode == 0, out.stderr
        reply = json.loads(out.stdout)
        assert reply["instance_id"] == a.instance_id
        assert reply["agent_version"] == __version__
    gone = await asyncio.to_thread(run_fleet, "ping", "edge-p", "--nats", nats_server.url)
    assert gone.returncode == 69
    assert "no agent is listening" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_cli_without_nats_says_so_in_one_line(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "gone")
    url = server.start()
    server.stop()
    for args in (("devices",), ("devices", "--json"), ("ping", "edge-1")):
        out = run_fleet(*args, "--nats", url)
        assert out.returncode == 69, (args, out.stderr)
        assert out.stderr.startswith("fleet: error: cannot reach NATS"), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_cli_rejects_bad_input_clearly() -> None:
    out = run_fleet("ping", "Bad/Device")
    assert out.returncode == 2
    assert "device_id" in out.stderr and "Traceback" not in out.stderr
    out = run_fleet("agent", "run", "--device-id", "ok", "--heartbeat-interval", "0")
    assert out.returncode == 2
    assert "--heartbeat-interval" in out.stderr
    out = run_fleet("devices", "--nats", "localhost:4222")
    assert out.returncode == 2
    assert "--nats" in out.stderr


async def test_agent_process_stops_cleanly_on_sigterm(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    proc = start_agent_process("edge-t", nats_server.url, tmp_path)
    log = tmp_path / "edge-t.log"
    try:
        await eventually(lambda: '"connected"' in log.read_text(), timeout=15, what="connected")
    finally:
        code = stop_process(proc)
    assert code == 0
    assert '"agent stopped"' in log.read_text()
