"""A command meant for one agent instance counts only that instance's reply.

Both the old agent and its candidate listen on ``fleet.<device>.cmd``; ``upgrade_stop`` is meant
for the armed old agent. Here two real clients holding the device's credentials answer: the
wrong instance at once, the right one a little later."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from harmony_fleet.adapters.nats.commands import CommandsClient
from harmony_fleet.adapters.nats.connection import NatsClient, barrier
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import (
    COMMAND,
    Reply,
    ReplyCode,
    encode,
    new_instance_id,
    subjects,
)
from tests.security.support import Attacker, attacker

RIGHT, WRONG = new_instance_id(), new_instance_id()


async def _answer(client: Attacker, instance: str, code: ReplyCode, delay_s: float) -> None:
    async def reply(msg: object) -> None:
        command = COMMAND.decode(msg.data)  # type: ignore[attr-defined]
        if delay_s:
            await asyncio.sleep(delay_s)  # the slower responder, on purpose
        answer = Reply(
            command_id=command.command_id, ok=code is ReplyCode.OK, code=code, instance_id=instance
        )
        await msg.respond(encode(answer))  # type: ignore[attr-defined]

    await client.nc.subscribe(subjects.command("edge-b"), cb=reply)
    await barrier(client.nc)


async def test_upgrade_stop_takes_only_the_reply_of_the_instance_it_was_for(
    nats_server: EmbeddedNats, creds: dict[str, Path], nc: NatsClient
) -> None:
    prefix = subjects.inbox_prefix("edge-b")
    old = await attacker(nats_server, creds["edge-b"], inbox_prefix=prefix)
    candidate = await attacker(nats_server, creds["edge-b"], inbox_prefix=prefix)
    try:
        await _answer(candidate, WRONG, ReplyCode.NOT_ARMED, 0.0)
        await _answer(old, RIGHT, ReplyCode.OK, 0.3)
        client = CommandsClient(nc)
        first = await client.upgrade_stop("edge-b", "u1", timeout_s=3.0)
        assert first.instance_id == WRONG, "the control: without only_from the first one wins"
        start = time.monotonic()
        reply = await client.upgrade_stop("edge-b", "u1", timeout_s=3.0, only_from=RIGHT)
        assert reply.instance_id == RIGHT and reply.code is ReplyCode.OK
        assert client.ignored == 1
        assert time.monotonic() - start < 3.0
        assert old.errors == [] and candidate.errors == []
    finally:
        await old.close()
        await candidate.close()
