"""A viewer aims JetStream at device B: stored bytes delivered to B's command and heartbeat
subjects are never acted on, with a real agent for B and a real operator.

Device A writes, on its own log subject (which it may), a body shaped like an ``upgrade_stop``
for B and one shaped like B's candidate heartbeat. The viewer (read-only, but allowed to create
consumers and make direct gets, whose deliver or reply subject no permission sees) has them
delivered to ``fleet.edge-b.cmd`` and ``fleet.edge-b.heartbeat`` by a push consumer (ack none
and ack explicit), a pull request and a direct get: every way measured in
``adapters/nats/provenance.py``. B's agent does not act, the operator does not count a
heartbeat, and both count the deliveries as security events.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import LOG_STREAM
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import (
    Heartbeat,
    Reply,
    ReplyCode,
    Role,
    UpgradeStopArgs,
    Verb,
    encode,
    new_command,
    new_instance_id,
    subjects,
)
from harmony_fleet.contracts.logs import log_subject, stored_subject
from harmony_fleet.operator.runtime import Operator
from tests.helpers import eventually
from tests.security.support import Attacker, attacker, tls_options

B = "edge-b"


class RecordingStop:
    """B's armed upgrade: what a forged ``upgrade_stop`` would reach."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_stop(self, upgrade_id: str, command_id: str) -> Reply | None:
        self.calls.append(upgrade_id)
        return Reply(command_id=command_id, ok=True, code=ReplyCode.OK, message="committing")


async def consumer(viewer: Attacker, deliver: str, ack: str, source: str) -> None:
    config = {
        "deliver_subject": deliver,
        "ack_policy": ack,
        "deliver_policy": "all",
        "filter_subject": source,
    }
    body = json.dumps({"stream_name": LOG_STREAM, "config": config}).encode()
    answer = await viewer.nc.request(f"$JS.API.CONSUMER.CREATE.{LOG_STREAM}", body, timeout=5)
    assert b'"error"' not in answer.data, answer.data


async def pull(viewer: Attacker, name: str, reply: str) -> None:
    config = {"durable_name": name, "ack_policy": "explicit", "deliver_policy": "all"}
    body = json.dumps({"stream_name": LOG_STREAM, "config": config}).encode()
    answer = await viewer.nc.request(
        f"$JS.API.CONSUMER.CREATE.{LOG_STREAM}.{name}", body, timeout=5
    )
    assert b'"error"' not in answer.data, answer.data
    await viewer.nc.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{LOG_STREAM}.{name}", b'{"batch":2}', reply=reply
    )


async def test_stored_data_a_viewer_delivers_to_b_is_never_acted_on(
    nats_server: EmbeddedNats,
    creds: dict[str, Path],
    operator: Operator,
    nc: NatsClient,
    tmp_path: Path,
) -> None:
    stop = RecordingStop()
    agent = Agent(
        AgentConfig(
            device_id=B,
            state_dir=tmp_path / "b",
            heartbeat_interval_s=0.2,
            nats=replace(tls_options(nats_server, creds[B]), inbox_prefix=subjects.inbox_prefix(B)),
        ),
        stop_handler=stop,
    )
    running = asyncio.ensure_future(agent.run())
    a = await attacker(nats_server, creds["edge-a"], inbox_prefix=subjects.inbox_prefix("edge-a"))
    viewer = await attacker(nats_server, creds["viewer"])
    try:
        await eventually(lambda: B in operator.registry.devices, timeout=10, what="B online")
        forged = new_instance_id()
        command = new_command(
            Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u-forged"), now=time.time(), ttl_s=30
        )
        beat = Heartbeat(
            device_id=B,
            instance_id=forged,
            agent_version="9.9.9",
            role=Role.CANDIDATE,
            upgrade_id="u-forged",
            seq=1,
            sent_at=time.time(),
            uptime_s=1.0,
            interval_s=0.2,
        )
        # Stored under these subjects (a unit's lines under the device's `units` subject).
        cmd_source, beat_source = log_subject("edge-a", "agent"), stored_subject("edge-a", "unit.x")
        await a.nc.publish(cmd_source, encode(command))
        await a.nc.publish(log_subject("edge-a", "unit.x"), encode(beat))
        await a.nc.flush()

        # A push consumer delivers only while its deliver subject has a subscriber of that very
        # subject (measured: the operator's `fleet.*.heartbeat` alone gets nothing). B's old
        # agent holds one during every upgrade (watching its candidate): stand in for it.
        watcher = await nc.subscribe(subjects.heartbeat(B))
        for ack in ("none", "explicit"):
            await consumer(viewer, subjects.command(B), ack, cmd_source)
            await consumer(viewer, subjects.heartbeat(B), ack, beat_source)
        await pull(viewer, "cmds", subjects.command(B))
        for deliver, source in (
            (subjects.command(B), cmd_source),
            (subjects.heartbeat(B), beat_source),
        ):
            await viewer.nc.publish(f"$JS.API.DIRECT.GET.{LOG_STREAM}.{source}", b"", reply=deliver)
        await viewer.nc.flush()

        # 2 consumers + 1 pull + 1 direct get at B's commands; 2 + 1 at its heartbeats.
        counts = operator.registry.security.counts
        instances = operator.registry.devices[B].instances
        await eventually(
            lambda: agent.commands.redelivered >= 4 or stop.calls, what="B saw the deliveries"
        )
        await eventually(
            lambda: counts["redelivered"] >= 3 or forged in instances, what="the operator saw them"
        )
        assert viewer.errors == [], "the server let the viewer do all of it: the hole is real"
        assert stop.calls == [], "B acted on a command JetStream delivered"
        assert forged not in instances, "the operator took a delivered heartbeat as B's"
        assert all(i.agent_version != "9.9.9" for i in instances.values())
        assert agent.connected.is_set() and agent.sent > 0, "B kept beating"
        await watcher.unsubscribe()
    finally:
        agent.request_exit(0)
        await asyncio.wait_for(running, 10)
        await a.close()
        await viewer.close()
