"""The commands client: request/reply to one device.

Used by the operator (``upgrade_stop``) and the CLI (``ping``). Every failure is one of ours:
nobody subscribed on the device's subject is :class:`~harmony_fleet.errors.Unavailable` (at once,
NATS says "no responders"), no answer in time is :class:`~harmony_fleet.errors.Timeout`, an answer
that does not decode is :class:`~harmony_fleet.errors.InvalidMessage`. A reply that says no is
returned as it is; callers decide (``Reply.ok``/``Reply.code``).

``only_from``: the command is meant for one agent instance (``upgrade_stop`` for the armed old
agent; the candidate subscribes to the same subject). Every reply is then read until the one
from that instance for this command arrives; the others are counted in ``ignored`` and logged,
never taken as the device's answer (the first reply would otherwise win).
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
import nats.errors

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.contracts import (
    REPLY,
    PingArgs,
    Reply,
    UpgradeId,
    UpgradeStopArgs,
    Verb,
    encode,
    new_command,
    subjects,
)
from harmony_fleet.errors import InvalidMessage, Timeout, Unavailable

log = logging.getLogger(__name__)


class CommandsClient:
    """Send commands to devices over an existing connection."""

    def __init__(self, nc: NatsClient, *, default_timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.default_timeout_s = default_timeout_s
        self.ignored = 0
        """Replies not taken: from another instance than the command was for, or garbled."""

    async def send(
        self,
        device: str,
        verb: Verb,
        args: msgspec.Struct | None = None,
        *,
        timeout_s: float | None = None,
        only_from: str | None = None,
    ) -> Reply:
        """Send one command and return the first reply (from ``only_from``, if given)."""
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        command = new_command(verb, args, now=time.time(), ttl_s=max(timeout, 1.0))
        if only_from is not None:
            return await self._reply_from(
                device, command.command_id, encode(command), only_from, timeout
            )
        try:
            msg = await self.nc.request(subjects.command(device), encode(command), timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise Unavailable(f"no agent is listening for device {device!r}") from exc
        except (nats.errors.TimeoutError, TimeoutError) as exc:
            raise Timeout(
                f"device {device!r} did not answer {verb.value} within {timeout} s"
            ) from exc
        except nats.errors.Error as exc:
            raise wrap_nats_error(exc, f"{verb.value} to {device!r}") from exc
        return REPLY.decode(msg.data)

    async def _reply_from(
        self, device: str, command_id: str, data: bytes, instance: str, wait_s: float
    ) -> Reply:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        async def keep(msg: object) -> None:
            replies.put_nowait(msg.data)  # type: ignore[attr-defined]

        try:
            inbox = self.nc.new_inbox()
            sub = await self.nc.subscribe(inbox, cb=keep)
            await self.nc.publish(subjects.command(device), data, reply=inbox)
        except nats.errors.Error as exc:
            raise wrap_nats_error(exc, f"command to {device!r}") from exc
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(replies.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise Timeout(
                        f"instance {instance} of device {device!r} did not answer within {wait_s} s"
                    ) from None
                try:
                    reply = REPLY.decode(raw)
                except InvalidMessage as exc:
                    self.ignored += 1
                    log.warning(
                        "reply ignored: garbled", extra={"device_id": device, "error": str(exc)}
                    )
                    continue
                if reply.command_id == command_id and reply.instance_id == instance:
                    return reply
                self.ignored += 1
                log.warning(
                    "reply ignored: not from the instance the command was for",
                    extra={"device_id": device, "expected": instance, "from": reply.instance_id},
                )
        finally:
            await sub.unsubscribe()

    async def ping(self, device: str, *, timeout_s: float | None = None) -> Reply:
        return await self.send(device, Verb.PING, PingArgs(), timeout_s=timeout_s)

    async def upgrade_stop(
        self,
        device: str,
        upgrade_id: UpgradeId,
        *,
        timeout_s: float | None = None,
        only_from: str | None = None,
        lease_epoch: int = 0,
    ) -> Reply:
        """Tell the device's armed old agent (instance ``only_from``, when known) to commit
        ``upgrade_id`` (see ADR-022), as the operator of lease epoch ``lease_epoch``
        (ADR-023)."""
        return await self.send(
            device,
            Verb.UPGRADE_STOP,
            UpgradeStopArgs(upgrade_id=upgrade_id, lease_epoch=lease_epoch),
            timeout_s=timeout_s,
            only_from=only_from,
        )
