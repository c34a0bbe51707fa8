"""The agent's command handler: bad input is answered, never raised; only the armed one stops."""

from __future__ import annotations

import json

import pytest

from harmony_fleet.agent.commands import CommandHandler
from harmony_fleet.contracts import (
    PingArgs,
    Reply,
    ReplyCode,
    Role,
    UpgradeStopArgs,
    Verb,
    encode,
    new_command,
)

IID = "f" * 32


class RecordingStop:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def on_stop(self, upgrade_id: str, command_id: str) -> Reply | None:
        self.calls.append((upgrade_id, command_id))
        return Reply(command_id=command_id, ok=True, code=ReplyCode.OK, message="committing")


def handler(role: Role = Role.MAIN, stop: RecordingStop | None = None) -> CommandHandler:
    return CommandHandler(instance_id=IID, agent_version="1.0.0", role=role, stop_handler=stop)


async def test_ping_answers_with_identity() -> None:
    cmd = new_command(Verb.PING, PingArgs(), now=100.0, ttl_s=5)
    reply = await handler().handle(encode(cmd), now=101.0)
    assert reply is not None
    assert reply.ok
    assert reply.code is ReplyCode.OK
    assert reply.command_id == cmd.command_id
    assert reply.instance_id == IID
    assert reply.agent_version == "1.0.0"


async def test_expired_command_is_refused() -> None:
    cmd = new_command(Verb.PING, PingArgs(), now=100.0, ttl_s=5)
    reply = await handler().handle(encode(cmd), now=106.0)
    assert reply is not None
    assert reply.code is ReplyCode.EXPIRED


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"[]",
        b'{"verb":"ping"}',
        b"x" * 100_000,
        b'{"command_id":"c","verb":"ping","issued_at":"now","expires_at":1}',
    ],
)
async def test_malformed_commands_are_answered_invalid(raw: bytes) -> None:
    h = handler()
    reply = await h.handle(raw, now=0.0)
    assert reply is not None
    assert reply.code is ReplyCode.INVALID
    assert not reply.ok
    assert h.rejected == 1


async def test_unknown_verb_is_named_in_the_reply() -> None:
    body = json.dumps({"command_id": "c1", "verb": "reboot", "issued_at": 1, "expires_at": 9})
    reply = await handler().handle(body.encode(), now=2.0)
    assert reply is not None
    assert reply.code is ReplyCode.UNKNOWN_VERB
    assert "reboot" in reply.message
    assert reply.command_id == "c1"


async def test_upgrade_stop_without_an_armed_upgrade_is_refused() -> None:
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    reply = await handler().handle(encode(cmd), now=2.0)
    assert reply is not None
    assert reply.code is ReplyCode.NOT_ARMED


async def test_upgrade_stop_goes_to_the_stop_handler_on_the_main_agent() -> None:
    stop = RecordingStop()
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    reply = await handler(stop=stop).handle(encode(cmd), now=2.0)
    assert reply is not None
    assert reply.ok
    assert stop.calls == [("u1", cmd.command_id)]


async def test_candidate_stays_silent_on_upgrade_stop() -> None:
    stop = RecordingStop()
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    reply = await handler(Role.CANDIDATE, stop).handle(encode(cmd), now=2.0)
    assert reply is None
    assert stop.calls == []
