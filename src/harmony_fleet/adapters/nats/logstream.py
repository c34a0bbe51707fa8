"""The log stream: recent log lines of every device, kept by JetStream within limits.

Agents publish log lines with plain core-NATS publishes on ``fleet.<device>.logs.<source>``
(fire and forget: a log line is not worth a round trip, and the agent must never wait); the
stream ``FLEET_LOGS`` on ``fleet.*.logs.>`` captures them, so ``fleet logs DEVICE`` shows history
while the device is offline.

The stream and its limits are defined once, in :mod:`~harmony_fleet.adapters.nats.fleet_kv`
(:class:`LogStreamLimits`, see docs/logs.md for the reasoning), and created by the operator or the
server bootstrap (:mod:`~harmony_fleet.adapters.nats.provision`); agents and ``fleet logs`` only
use what exists.

Readers use an ordered consumer (ephemeral, in-memory, flow controlled, reset by nats-py after a
gap or a server restart) filtered to one device, from the start or from a time; :class:`LogFeed`
yields decoded lines, undecodable messages as :class:`Skipped`, and one :class:`EndOfHistory`
once it has caught up with what the stream held when it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamInfo

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.adapters.nats.fleet_kv import LOG_STREAM, LogStreamLimits
from harmony_fleet.contracts import LOG_LINE, LogLine
from harmony_fleet.contracts.logs import SOURCE_UNIT_PREFIX, device_logs, log_subject
from harmony_fleet.errors import InvalidMessage, NotFound

log = logging.getLogger(__name__)

__all__ = [
    "STREAM",
    "EndOfHistory",
    "LogEvent",
    "LogFeed",
    "LogStreamLimits",
    "Received",
    "Skipped",
    "decode_message",
    "log_stream",
]

STREAM = LOG_STREAM


async def log_stream(js: JetStreamContext) -> StreamInfo:
    """The log stream as it is; :class:`NotFound` (saying who creates it) when it does not exist."""
    try:
        return await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError as exc:
        raise NotFound(
            f"stream {STREAM} does not exist: start the operator (`fleet operator`) or "
            "`fleet server`, which create it"
        ) from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"look up stream {STREAM}") from exc


@dataclass(frozen=True)
class Received:
    """A decoded line, with where the stream keeps it."""

    line: LogLine
    subject: str
    stream_seq: int
    stored_at: float


@dataclass(frozen=True)
class Skipped:
    """A message on a log subject that is not a valid :class:`LogLine` (garbage, too large)."""

    subject: str
    stream_seq: int
    reason: str


@dataclass(frozen=True)
class EndOfHistory:
    """Everything the stream held when the feed started has been yielded."""


LogEvent = Received | Skipped | EndOfHistory


def decode_message(subject: str, data: bytes, stream_seq: int, stored_at: float) -> LogEvent:
    """Decode one stored message; anything invalid becomes a :class:`Skipped` with the reason."""
    try:
        line = LOG_LINE.decode(data)
    except InvalidMessage as exc:
        return Skipped(subject, stream_seq, f"{exc.field}: {exc.reason}")
    return Received(line, subject, stream_seq, stored_at)


class LogFeed:
    """An ordered consumer over one device's log lines (one source, or all of them).

    Use as ``async with LogFeed(nc, device) as feed: async for event in feed.events(...)``.
    """

    def __init__(
        self,
        nc: NatsClient,
        device: str,
        *,
        source: str | None = None,
        since: float | None = None,
        queue_size: int = 10_000,
    ) -> None:
        self.nc = nc
        # A unit's lines are stored with the device's other units' (``fleet.<d>.logs.units``;
        # a stream made before that keeps them under their own subjects): read the device's
        # lines and keep that source's. The agent's have a stored subject of their own.
        self.source = source
        unit = source is not None and source.startswith(SOURCE_UNIT_PREFIX)
        self.subject = log_subject(device, source) if source and not unit else device_logs(device)
        self._only = source if unit else None
        self.since = since
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self._sub: Any = None
        self._empty_at_start = False

    async def __aenter__(self) -> LogFeed:
        js = self.nc.jetstream()
        await log_stream(js)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        if self.since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = dt.datetime.fromtimestamp(self.since, tz=dt.UTC)
        try:
            self._sub = await js.subscribe(
                self.subject,
                stream=STREAM,
                cb=self._queue.put,
                ordered_consumer=True,
                config=config,
                pending_bytes_limit=64 * 1024 * 1024,
            )
            info = await self._sub.consumer_info()
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"read {self.subject}") from exc
        delivered = info.delivered.consumer_seq if info.delivered else 0
        self._empty_at_start = not info.num_pending and not delivered
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def events(self, *, follow: bool, idle_s: float = 5.0) -> AsyncIterator[LogEvent]:
        """History, then :class:`EndOfHistory`, then (with ``follow``) live lines forever.

        ``idle_s`` bounds the wait for history that the stream announced but that does not come
        (lines removed by the limits while we read): silence that long also ends the history.
        """
        history = not self._empty_at_start
        if not history:
            yield EndOfHistory()
            if not follow:
                return
        while True:
            try:
                if history:
                    msg = await asyncio.wait_for(self._queue.get(), idle_s)
                else:
                    msg = await self._queue.get()
            except TimeoutError:
                history = False
                yield EndOfHistory()
                if not follow:
                    return
                continue
            meta = msg.metadata
            stored = meta.timestamp.timestamp() if meta.timestamp else 0.0
            event = decode_message(msg.subject, msg.data, meta.sequence.stream, stored)
            if self._only is None or not (
                isinstance(event, Received) and event.line.source != self._only
            ):
                yield event
            if history and not meta.num_pending:
                history = False
                yield EndOfHistory()
                if not follow:
                    return
