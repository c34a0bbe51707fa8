"""The commands client: request/reply to one device.

Used by the operator (``upgrade_stop``) and the CLI (``ping``). Every failure is one of ours:
nobody subscribed on the device's subject is :class:`~harmony_fleet.errors.Unavailable` (at once,
NATS says "no responders"), no answer in time is :class:`~harmony_fleet.errors.Timeout`, an answer
that does not decode is :class:`~harmony_fleet.errors.InvalidMessage`. A reply that says no is
returned as it is; callers decide (``Reply.ok``/``Reply.code``).
"""

from __future__ import annotations

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
from harmony_fleet.errors import Timeout, Unavailable


class CommandsClient:
    """Send commands to devices over an existing connection."""

    def __init__(self, nc: NatsClient, *, default_timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.default_timeout_s = default_timeout_s

    async def send(
        self,
        device: str,
        verb: Verb,
        args: msgspec.Struct | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Reply:
        """Send one command and return the first reply."""
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        command = new_command(verb, args, now=time.time(), ttl_s=max(timeout, 1.0))
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

    async def ping(self, device: str, *, timeout_s: float | None = None) -> Reply:
        return await self.send(device, Verb.PING, PingArgs(), timeout_s=timeout_s)

    async def upgrade_stop(
        self, device: str, upgrade_id: UpgradeId, *, timeout_s: float | None = None
    ) -> Reply:
        """Tell the device's armed old agent to commit ``upgrade_id`` (see ADR-022)."""
        return await self.send(
            device, Verb.UPGRADE_STOP, UpgradeStopArgs(upgrade_id=upgrade_id), timeout_s=timeout_s
        )
