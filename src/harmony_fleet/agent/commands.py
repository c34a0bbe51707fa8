"""Answering commands: decode strictly, refuse clearly, act only on what this instance may do.

The handler is a plain function of the raw bytes to an optional :class:`Reply`, so it is tested
without NATS. Bad input never raises out of here: an undecodable command is answered ``invalid``
(when it has a reply subject) and logged, an unknown verb ``unknown_verb``. ``upgrade_stop`` goes
to the :class:`StopHandler` (the upgrade driver's stop signal); an agent without one, or a
candidate, is never armed. A stop whose ``lease_epoch`` is older than the operator lease's
(read by :attr:`CommandHandler.lease_epoch`, a direct get) comes from a deposed operator and is
refused ``deposed`` (ADR-023); when the lease cannot be read the stop is judged as before.

No answer depends on this device's clock agreeing with the sender's (a board without a real-time
clock is often minutes off): the sender's ``issued_at``/``expires_at`` are never compared with
the local clock. A command id already answered gets its first answer again and is not acted on
twice (the last :data:`REMEMBERED` ids); ``upgrade_stop`` acts only for the armed upgrade id. An
answer later than the sender's ``ttl_s`` (measured on this agent's monotonic clock from arrival)
is only logged: the sender has stopped waiting and will ask again with a new id.

A message JetStream delivered to the command subject (a viewer's consumer or direct get aimed
at it: :mod:`~harmony_fleet.adapters.nats.provenance`) is dropped before decoding, never
answered, counted in ``redelivered`` (:meth:`CommandHandler.delivered_by_jetstream`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.kv import TypedKV
from harmony_fleet.adapters.nats.provenance import from_jetstream
from harmony_fleet.contracts import (
    COMMAND,
    RAW_COMMAND,
    Command,
    Reply,
    ReplyCode,
    Role,
    UpgradeStopArgs,
    Verb,
    decode_args,
)
from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.lease import LEASE_KEY, OperatorLease
from harmony_fleet.core.security import SecurityEvents
from harmony_fleet.errors import FleetError, InvalidMessage

log = logging.getLogger(__name__)

REMEMBERED = 256
"""How many answered command ids an agent keeps to answer a replay without acting again."""


class StopHandler(Protocol):
    """What the upgrade driver offers the command handler (see ``agent.upgrade``)."""

    def on_stop(self, upgrade_id: UpgradeId, command_id: str) -> Awaitable[Reply | None]:
        """Act on ``UpgradeStop`` if armed for ``upgrade_id``; None means stay silent."""
        ...


class LeaseReader:
    """The operator lease's epoch, read when a stop arrives (a direct get of its one key).

    The fleet's buckets (``adapters.nats.fleet_kv``, which brings the upgrade protocol's core)
    are imported at the first read: only an armed main reads the lease, and it has them loaded
    already; a candidate, which every upgrade starts and waits for, starts without them."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._kv: TypedKV[OperatorLease] | None = None

    async def __call__(self) -> int | None:
        try:
            if self._kv is None:
                from harmony_fleet.adapters.nats.fleet_kv import LEASE, FleetKV  # noqa: PLC0415

                self._kv = await FleetKV(self.nc).open(LEASE)
            entry = await asyncio.wait_for(self._kv.get(LEASE_KEY), 2.0)
        except (FleetError, TimeoutError) as exc:
            log.warning("operator lease not readable", extra={"error": str(exc)})
            return None
        return entry.value.epoch if entry is not None else None


class CommandHandler:
    """Dispatch one device's commands for one agent instance."""

    def __init__(
        self,
        *,
        instance_id: InstanceId,
        agent_version: Version,
        role: Role,
        stop_handler: StopHandler | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        subject: str = "",
        lease_epoch: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        self.lease_epoch = lease_epoch
        """The operator lease's current epoch (None: not readable), to refuse a deposed
        operator's stop; None: no check."""
        self.subject = subject
        """The device's command subject (a JetStream delivery keeps its stored subject)."""
        self.redelivered = 0
        """Messages dropped because JetStream, not a sender, delivered them."""
        self._events = SecurityEvents()
        self.instance_id = instance_id
        self.agent_version = agent_version
        self.role = role
        self.stop_handler = stop_handler
        self.rejected = 0
        self.replayed = 0
        self._monotonic = monotonic
        self._answered: OrderedDict[str, Reply] = OrderedDict()

    async def _deposed(self, args: UpgradeStopArgs) -> str:
        """Why this stop comes from a deposed operator ("" when it does not, or cannot tell:
        no epoch sent, no lease readable)."""
        if not args.lease_epoch or self.lease_epoch is None:
            return ""
        current = await self.lease_epoch()
        if current is None or args.lease_epoch >= current:
            return ""
        return f"sent under lease epoch {args.lease_epoch}; the operator lease is at {current}"

    def _reply(self, command_id: str, code: ReplyCode, message: str = "") -> Reply:
        return Reply(
            command_id=command_id if command_id else "unknown",
            ok=code is ReplyCode.OK,
            code=code,
            message=message,
            instance_id=self.instance_id,
            agent_version=self.agent_version,
        )

    def delivered_by_jetstream(self, subject: str, reply: str, headers: Any) -> bool:
        """True (and counted, logged at most once a minute) when a message on this device's
        command subject was not published by a sender but delivered by JetStream: stored bytes
        sent there by whoever may create a consumer or make a direct get (a viewer). Such a
        message is never acted on and never answered (docs/security.md)."""
        if not from_jetstream(reply, headers) and subject == (self.subject or subject):
            return False
        self.redelivered += 1
        unlogged = self._events.record("redelivered", self.subject, self._monotonic())
        if unlogged is not None:
            log.warning(
                "security: command delivered by JetStream dropped",
                extra={"subject": subject[:200], "reply": reply[:64], "unlogged": unlogged},
            )
        return True

    async def handle(self, data: bytes) -> Reply | None:
        """Answer one command message; never raises for bad input."""
        arrived = self._monotonic()
        try:
            raw = RAW_COMMAND.decode(data)
        except InvalidMessage as exc:
            self.rejected += 1
            log.warning("command dropped", extra={"field": exc.field, "reason": exc.reason})
            return self._reply("", ReplyCode.INVALID, str(exc))
        if raw.verb not in Verb._value2member_map_:
            self.rejected += 1
            log.warning("unknown verb", extra={"verb": raw.verb[:64]})
            return self._reply(
                raw.command_id[:64], ReplyCode.UNKNOWN_VERB, f"unknown verb {raw.verb[:64]!r}"
            )
        try:
            command = COMMAND.decode(data)
            args = decode_args(command)
        except InvalidMessage as exc:
            self.rejected += 1
            log.warning("command dropped", extra={"field": exc.field, "reason": exc.reason})
            return self._reply(raw.command_id[:64], ReplyCode.INVALID, str(exc))
        first = self._answered.get(command.command_id)
        if first is not None:
            self.replayed += 1
            log.info("command replayed", extra={"verb": command.verb.value})
            return first
        reply = await self._act(command, args)
        if reply is not None:
            self._answered[command.command_id] = reply
            while len(self._answered) > REMEMBERED:
                self._answered.popitem(last=False)
        took = self._monotonic() - arrived
        if command.ttl_s is not None and took > command.ttl_s:
            log.warning(
                "command answered after the sender stopped waiting",
                extra={"verb": command.verb.value, "took_s": round(took, 3), "ttl": command.ttl_s},
            )
        return reply

    async def _act(self, command: Command, args: object) -> Reply | None:
        if command.verb is Verb.PING:
            return self._reply(command.command_id, ReplyCode.OK, "pong")
        if command.verb is Verb.UPGRADE_STOP:
            assert isinstance(args, UpgradeStopArgs)
            if self.role is Role.CANDIDATE:
                # Both instances receive the stop; only the armed old agent answers.
                log.info("upgrade_stop ignored by candidate", extra={"upgrade_id": args.upgrade_id})
                return None
            if self.stop_handler is None:
                log.warning("upgrade_stop while not armed", extra={"upgrade_id": args.upgrade_id})
                return self._reply(
                    command.command_id,
                    ReplyCode.NOT_ARMED,
                    "no upgrade is waiting for a stop on this agent",
                )
            deposed = await self._deposed(args)
            if deposed:
                log.warning("upgrade_stop from a deposed operator refused", extra={
                    "upgrade_id": args.upgrade_id, "detail": deposed})  # fmt: skip
                return self._reply(command.command_id, ReplyCode.DEPOSED, deposed)
            return await self.stop_handler.on_stop(args.upgrade_id, command.command_id)
        return self._reply(command.command_id, ReplyCode.UNKNOWN_VERB, "verb not handled")
