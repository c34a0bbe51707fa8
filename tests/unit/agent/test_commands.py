"""The agent's command handler: bad input is answered, never raised; only the armed one stops."""

from __future__ import annotations

import json
import logging
import time

import pytest

from harmony_fleet.agent.commands import REMEMBERED, CommandHandler
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
    reply = await handler().handle(encode(cmd))
    assert reply is not None
    assert reply.ok
    assert reply.code is ReplyCode.OK
    assert reply.command_id == cmd.command_id
    assert reply.instance_id == IID
    assert reply.agent_version == "1.0.0"


@pytest.mark.parametrize("sender_clock", [100.0, time.time() + 600, time.time() - 600])
async def test_no_answer_depends_on_the_sender_clock(sender_clock: float) -> None:
    """A device clock minutes ahead of the operator's used to refuse every stop as expired."""
    stop = RecordingStop()
    cmd = new_command(
        Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=sender_clock, ttl_s=5
    )
    reply = await handler(stop=stop).handle(encode(cmd))
    assert reply is not None
    assert reply.code is ReplyCode.OK, reply
    assert stop.calls == [("u1", cmd.command_id)]


async def test_a_replayed_command_gets_its_first_answer_and_is_not_acted_on_again() -> None:
    stop = RecordingStop()
    h = handler(stop=stop)
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    first = await h.handle(encode(cmd))
    again = await h.handle(encode(cmd))
    assert first is not None and again == first
    assert stop.calls == [("u1", cmd.command_id)]
    assert h.replayed == 1
    other = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    await h.handle(encode(other))
    assert len(stop.calls) == 2, "a new command id is a new request"


async def test_only_the_last_answers_are_remembered() -> None:
    h = handler()
    first = new_command(Verb.PING, PingArgs(), now=1.0, ttl_s=5)
    await h.handle(encode(first))
    for _ in range(REMEMBERED):
        await h.handle(encode(new_command(Verb.PING, PingArgs(), now=1.0, ttl_s=5)))
    await h.handle(encode(first))
    assert h.replayed == 0, "the oldest id was forgotten: the memory stays bounded"


async def test_an_answer_later_than_the_ttl_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    ticks = iter([0.0, 7.0])
    h = CommandHandler(
        instance_id=IID, agent_version="1.0.0", role=Role.MAIN, monotonic=lambda: next(ticks)
    )
    cmd = new_command(Verb.PING, PingArgs(), now=1.0, ttl_s=5)
    with caplog.at_level(logging.WARNING, logger="harmony_fleet.agent.commands"):
        reply = await h.handle(encode(cmd))
    assert reply is not None and reply.ok, "answered all the same: the sender may still read it"
    assert "after the sender stopped waiting" in caplog.text


async def test_a_command_from_an_older_sender_without_ttl_is_answered() -> None:
    body = json.dumps({"command_id": "c1", "verb": "ping", "issued_at": 1, "expires_at": 2})
    reply = await handler().handle(body.encode())
    assert reply is not None and reply.code is ReplyCode.OK


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
    reply = await h.handle(raw)
    assert reply is not None
    assert reply.code is ReplyCode.INVALID
    assert not reply.ok
    assert h.rejected == 1


async def test_unknown_verb_is_named_in_the_reply() -> None:
    body = json.dumps({"command_id": "c1", "verb": "reboot", "issued_at": 1, "expires_at": 9})
    reply = await handler().handle(body.encode())
    assert reply is not None
    assert reply.code is ReplyCode.UNKNOWN_VERB
    assert "reboot" in reply.message
    assert reply.command_id == "c1"


async def test_upgrade_stop_without_an_armed_upgrade_is_refused() -> None:
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    reply = await handler().handle(encode(cmd))
    assert reply is not None
    assert reply.code is ReplyCode.NOT_ARMED


async def test_upgrade_stop_goes_to_the_stop_handler_on_the_main_agent() -> None:
    stop = RecordingStop()
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    reply = await handler(stop=stop).handle(encode(cmd))
    assert reply is not None
    assert reply.ok
    assert stop.calls == [("u1", cmd.command_id)]


async def test_candidate_stays_silent_on_upgrade_stop() -> None:
    stop = RecordingStop()
    cmd = new_command(Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id="u1"), now=1.0, ttl_s=5)
    reply = await handler(Role.CANDIDATE, stop).handle(encode(cmd))
    assert reply is None
    assert stop.calls == []


@pytest.mark.parametrize(
    ("subject", "reply", "headers"),
    [
        ("fleet.edge-a.logs.agent", "$JS.ACK.FLEET_LOGS.c.1.1.1.1.0", None),
        ("fleet.edge-b.cmd", "$JS.ACK.FLEET_LOGS.c.1.1.1.1.0", None),
        ("fleet.edge-b.cmd", "", {"Nats-Stream": "FLEET_LOGS", "Nats-Sequence": "1"}),
        ("fleet.edge-a.logs.agent", "_INBOX.x", None),
    ],
)
def test_a_command_delivered_by_jetstream_is_dropped_and_counted(
    subject: str, reply: str, headers: dict[str, str] | None
) -> None:
    """A viewer can aim a consumer or a direct get at B's command subject: what arrives must
    never be acted on (fails when the handler looks at the body alone)."""
    h = CommandHandler(
        instance_id=IID, agent_version="1.0.0", role=Role.MAIN, subject="fleet.edge-b.cmd"
    )
    assert h.delivered_by_jetstream(subject, reply, headers)
    assert h.redelivered == 1
    assert not h.delivered_by_jetstream("fleet.edge-b.cmd", "_INBOX.op.1", None)
    assert h.redelivered == 1


class Lease:
    """The operator lease's epoch as the agent reads it (None: not readable)."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch
        self.reads = 0

    async def __call__(self) -> int | None:
        self.reads += 1
        return self.epoch


def _stop(epoch: int) -> bytes:
    args = UpgradeStopArgs(upgrade_id="u1", lease_epoch=epoch)
    return encode(new_command(Verb.UPGRADE_STOP, args, now=1.0, ttl_s=5))


async def test_a_stop_from_an_operator_older_than_the_lease_is_refused_deposed() -> None:
    stop, lease = RecordingStop(), Lease(3)
    h = handler(stop=stop)
    h.lease_epoch = lease
    reply = await h.handle(_stop(2))
    assert reply is not None and reply.code is ReplyCode.DEPOSED and not reply.ok
    assert "epoch 2" in reply.message and "at 3" in reply.message
    assert stop.calls == [], "a deposed operator's stop commits nothing"


@pytest.mark.parametrize(("sent", "lease"), [(3, 3), (4, 3), (0, 3), (2, None)])
async def test_a_stop_of_the_current_epoch_no_epoch_or_an_unreadable_lease_goes_on(
    sent: int, lease: int | None
) -> None:
    stop = RecordingStop()
    h = handler(stop=stop)
    h.lease_epoch = Lease(lease)
    reply = await h.handle(_stop(sent))
    assert reply is not None and reply.ok
    assert len(stop.calls) == 1
