"""The command protocol: request/reply on ``fleet.<device_id>.cmd``.

A :class:`Command` is an envelope: id, verb, how long the sender waits for the answer
(``ttl_s``), and ``args`` whose shape depends on the verb (validated against :data:`VERB_ARGS`).
Both the device's main agent and an upgrade candidate subscribe to the same subject; a verb that
only one instance may act on (such as ``upgrade_stop``) is answered only by that instance.
Every answer is a :class:`Reply`.

No decision depends on the two machines' clocks agreeing (device clocks drift by minutes): the
receiver never compares ``issued_at``/``expires_at`` (the sender's wall clock) with its own.
Replay safety comes from ids instead: a command id already answered gets the same answer again
without being acted on twice, and ``upgrade_stop`` commits only the upgrade the agent is armed
for. ``issued_at`` and ``expires_at`` are still sent and decoded, because agents older than
``ttl_s`` require them (and refuse a command whose ``expires_at`` is behind their own clock).

Adding a verb: add it to :class:`Verb`, give it an args struct, register it in
:data:`VERB_ARGS`. Old agents answer a verb they do not know with ``code="unknown_verb"`` (the
envelope decodes with :class:`RawCommand`, which keeps the verb as a plain string).
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

import msgspec

from harmony_fleet.contracts._codec import Codec
from harmony_fleet.contracts.ids import (
    InstanceIdField,
    NonNegFloat,
    NonNegInt,
    ShortText,
    UpgradeIdField,
    VersionField,
    whole,
)
from harmony_fleet.errors import InvalidMessage

COMMAND_SCHEMA_VERSION = 1

CommandIdField = msgspec.Meta(pattern=whole(r"[A-Za-z0-9_-]{1,64}"))


class Verb(enum.StrEnum):
    """What a command asks the agent to do."""

    PING = "ping"
    UPGRADE_STOP = "upgrade_stop"


class PingArgs(msgspec.Struct, frozen=True, kw_only=True):
    """``ping`` takes no arguments."""


class UpgradeStopArgs(msgspec.Struct, frozen=True, kw_only=True):
    """``upgrade_stop``: the operator has seen the candidate of ``upgrade_id`` working."""

    upgrade_id: UpgradeIdField
    lease_epoch: NonNegInt = 0
    """The sending operator's lease epoch (ADR-023): an agent refuses a stop from an epoch
    older than the lease's."""


VERB_ARGS: dict[Verb, type[msgspec.Struct]] = {
    Verb.PING: PingArgs,
    Verb.UPGRADE_STOP: UpgradeStopArgs,
}


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A request to one device, answered at most once per ``command_id``."""

    v: int = COMMAND_SCHEMA_VERSION
    command_id: str
    verb: Verb
    issued_at: NonNegFloat
    """The sender's wall clock when it sent the command: for logs, never compared."""
    expires_at: NonNegFloat
    """``issued_at + ttl_s`` on the sender's wall clock: only agents older than ``ttl_s`` read
    it (they compare it with their own clock, which is the defect ``ttl_s`` replaces)."""
    args: dict[str, Any] = {}
    ttl_s: NonNegFloat | None = None
    """How long the sender waits for the answer (seconds, a duration: no clock is shared).
    The receiver only logs when it answered later than that; absent from older senders."""


class RawCommand(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope with the verb as a plain string: lets an agent name an unknown verb."""

    v: int = COMMAND_SCHEMA_VERSION
    command_id: str
    verb: str
    issued_at: NonNegFloat
    expires_at: NonNegFloat
    args: dict[str, Any] = {}
    ttl_s: NonNegFloat | None = None


class ReplyCode(enum.StrEnum):
    """Machine-readable outcome of a command."""

    OK = "ok"
    UNKNOWN_VERB = "unknown_verb"
    INVALID = "invalid"
    EXPIRED = "expired"
    """Sent only by agents older than ``Command.ttl_s`` (they compared clocks); kept to decode."""
    NOT_ARMED = "not_armed"
    WRONG_UPGRADE = "wrong_upgrade"
    ERROR = "error"
    DEPOSED = "deposed"
    """``upgrade_stop`` from an operator whose lease epoch is older than the lease's (ADR-023)."""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to a :class:`Command`."""

    v: int = COMMAND_SCHEMA_VERSION
    command_id: str
    ok: bool
    code: ReplyCode
    message: ShortText = ""
    instance_id: InstanceIdField | None = None
    agent_version: VersionField | None = None
    data: dict[str, Any] = {}


def new_command(verb: Verb, args: msgspec.Struct | None, *, now: float, ttl_s: float) -> Command:
    """Build a command envelope; the sender waits ``ttl_s`` seconds (``now``: its wall clock)."""
    return Command(
        command_id=uuid.uuid4().hex,
        verb=verb,
        issued_at=now,
        expires_at=now + ttl_s,
        args=msgspec.to_builtins(args) if args is not None else {},
        ttl_s=ttl_s,
    )


_ARGS_CODECS: dict[Verb, Codec[Any]] = {verb: Codec(t) for verb, t in VERB_ARGS.items()}


def decode_args(command: Command) -> msgspec.Struct:
    """Validate ``command.args`` against its verb's struct (raises InvalidMessage)."""
    codec = _ARGS_CODECS[command.verb]
    try:
        result: msgspec.Struct = codec.convert(command.args)
    except InvalidMessage as exc:
        field = exc.field.replace("$", "$.args", 1)
        raise InvalidMessage(field, exc.reason, type_name="Command") from exc
    return result
