"""The shipping task: drain the buffer to NATS, report drops, never hold anyone up.

One asyncio task per agent. It wakes when the buffer has lines, bounds and encodes each one
(:func:`build_line`) and publishes it with a core-NATS publish on
``fleet.<device>.logs.<source>``; the ``FLEET_LOGS`` stream stores it. It is the only code that
waits on NATS, and it waits politely:

* while NATS is unreachable it does not publish at all: lines stay in the bounded buffer (the
  newest ones survive; evictions count as ``disconnected``) and go out after the reconnect;
* while nats-py's outgoing buffer holds more than ``max_pending_bytes`` (a slow link) it stops
  draining, so heartbeats never queue behind a backlog of log lines;
* every ``report_interval_s``, if anything was dropped since the last report, it publishes one
  ``logs.dropped`` line (source ``agent``, level warning) with the cumulative counters. That
  line bypasses the rate limit and the buffer: a report of drops must not itself be dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.agent.logs.buffer import DropReason, LogBuffer
from harmony_fleet.agent.logs.handler import ShippingHandler
from harmony_fleet.agent.logs.lines import Identity, Pending, build_line
from harmony_fleet.contracts import LogLevel
from harmony_fleet.contracts.logs import SOURCE_AGENT, log_subject
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: The message of the periodic drop report.
DROP_REPORT_MSG = "logs.dropped"


@dataclass(frozen=True, kw_only=True)
class ShipConfig:
    """How the agent ships logs (``fleet agent run --ship-logs …``; see docs/logs.md)."""

    enabled: bool = True
    rate: float = 50.0
    """Lines per second per source (token bucket refill); 0 means unlimited."""
    burst: float = 200.0
    """Lines a source may send at once after a quiet period (token bucket size)."""
    buffer_lines: int = 1000
    """Lines held while NATS is slow or away (all sources together)."""
    journal_units: tuple[str, ...] = ()
    journalctl: str = "journalctl"
    report_interval_s: float = 60.0
    batch: int = 256
    max_pending_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 1:
            raise ConfigError(
                f"--log-rate must be >= 0 and --log-burst >= 1, got {self.rate} and {self.burst}"
            )
        if not 1 <= self.buffer_lines <= 1_000_000:
            raise ConfigError(f"--log-buffer must be in 1..1000000, got {self.buffer_lines}")
        if self.report_interval_s <= 0:
            raise ConfigError("the drop report interval must be positive")


class LogShipper:
    """Owns the buffer, the logging handler and the publishing loop of one agent instance."""

    def __init__(
        self,
        identity: Identity,
        config: ShipConfig | None = None,
        *,
        ready: Callable[[NatsClient], Awaitable[bool]] | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or ShipConfig()
        self._ready = ready
        self.buffer = LogBuffer(
            capacity=self.config.buffer_lines, rate=self.config.rate, burst=self.config.burst
        )
        self.handler = ShippingHandler(self.buffer)
        self.handler.addFilter(self._own_records)
        self.delivered = 0
        self.truncated = 0
        self.reports = 0
        self._reported: dict[str, int] = self.buffer.snapshot()
        self._subjects: dict[str, str] = {}

    def _own_records(self, record: logging.LogRecord) -> bool:
        # Several agents in one process (tests, a demo) each ship only their own lines; records
        # without an instance id (library loggers) go to every shipper.
        return getattr(record, "instance_id", self.identity.instance_id) == (
            self.identity.instance_id
        )

    # -- counters -------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """Offered, delivered, truncated, still buffered, and drops by reason."""
        drops = self.buffer.snapshot()
        return {
            "offered": self.buffer.offered,
            "delivered": self.delivered,
            "truncated": self.truncated,
            "buffered": len(self.buffer),
            **drops,
            "dropped": sum(drops.values()),
        }

    # -- the loop -------------------------------------------------------------------------------
    async def run(self, nc: NatsClient, *, stop: asyncio.Event | None = None) -> None:
        """Ship until ``stop`` is set or the task is cancelled; then ship what is left (bounded)
        and a last drop report.

        ``stop`` matters because nats-py swallows a cancellation that arrives while a publish
        waits for its flusher (``_flush_pending``): a loop that relied on cancellation alone
        could outlive the agent's shutdown. The loop also checks ``Task.cancelling()``.
        """
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        wake = self.buffer.bind(loop)
        interval = self.config.report_interval_s
        next_report = loop.time() + interval
        was_connected = False
        reconnects = nc.stats["reconnects"]

        def stopping() -> bool:
            return (stop is not None and stop.is_set()) or bool(task and task.cancelling())

        try:
            while not stopping():
                connected = nc.is_connected
                # A reconnect the loop slept through (an idle agent waits for its next line, it
                # does not poll the connection) still holds the lines until the stream is back.
                if connected and (not was_connected or nc.stats["reconnects"] != reconnects):
                    await self._wait_ready(nc)
                was_connected = connected
                reconnects = nc.stats["reconnects"]
                self.buffer.connected = connected
                drained = await self._drain(nc, until=next_report) if connected else False
                if loop.time() >= next_report:
                    if connected:
                        await self._report(nc)
                    next_report = loop.time() + interval
                if not connected:
                    self.buffer.rearm()  # offers keep setting the event: do not spin on it
                    await asyncio.sleep(0.2)
                    continue
                if not drained:
                    wait = 0.05  # nats-py's backlog is too big: let it flush
                elif len(self.buffer):
                    wait = 0.0  # the drain stopped for the report: more to do at once
                else:
                    # Idle: a new line (the buffer's event) or the drop report wakes the loop,
                    # nothing else: an idle agent's shipper costs no CPU between them.
                    wait = next_report - loop.time()
                await wait_event(wake, max(0.0, wait))
        except asyncio.CancelledError:
            await self._final(nc)
            raise
        else:
            await self._final(nc)
        finally:
            self.buffer.unbind()

    async def _wait_ready(self, nc: NatsClient) -> None:
        """After a (re)connect, hold the lines until the stream can store them (bounded).

        A restarted server accepts connections before JetStream has recovered its streams, and
        a core publish in that window is stored nowhere. ``ready`` (the agent: make sure the
        stream exists) answers once it can; if it cannot, lines go out anyway.
        """
        if self._ready is None:
            return
        with contextlib.suppress(Exception):
            if await self._ready(nc):
                return
        log.warning("log stream not confirmed; shipping anyway")

    async def _final(self, nc: NatsClient) -> None:
        """What is left, within a second (a deadline, not a cancellation: see :meth:`run`)."""
        with contextlib.suppress(Exception):
            if nc.is_connected:
                await self._drain(nc, until=asyncio.get_running_loop().time() + 1.0)
                await self._report(nc)

    async def _drain(self, nc: NatsClient, *, until: float) -> bool:
        """Publish what is buffered, until empty (True) or ``until`` after at least one batch
        (True: go on after the report); False if it stopped early (disconnected, or nats-py's
        backlog is too big)."""
        loop = asyncio.get_running_loop()
        while True:
            self.buffer.rearm()
            if nc.pending_data_size > self.config.max_pending_bytes:
                return False
            batch = self.buffer.take(self.config.batch)
            if not batch:
                return True
            for index, pending in enumerate(batch):
                if not nc.is_connected:
                    self.buffer.count(DropReason.DISCONNECTED, len(batch) - index)
                    return False
                await self._publish(nc, pending)
            if loop.time() >= until:  # at least one batch each time, then the report
                return True
            await asyncio.sleep(0)  # one batch at a time: let heartbeats and commands run

    async def _publish(self, nc: NatsClient, pending: Pending) -> None:
        line, data = build_line(self.identity, pending)
        if line.truncated:
            self.truncated += 1
        subject = self._subjects.get(pending.source)
        if subject is None:
            subject = self._subjects[pending.source] = log_subject(
                self.identity.device_id, pending.source
            )
        try:
            await nc.publish(subject, data)
        except Exception:  # nats-py raises several unrelated types while reconnecting
            self.buffer.count(DropReason.DISCONNECTED)
        else:
            self.delivered += 1

    async def _report(self, nc: NatsClient) -> None:
        """Publish ``logs.dropped`` if the drop counters moved since the last report."""
        drops = self.buffer.snapshot()
        if drops == self._reported:
            return
        since = sum(drops.values()) - sum(self._reported.values())
        fields: dict[str, Any] = {**drops, "dropped_since_last": since}
        fields["delivered"] = self.delivered
        pending = Pending(
            source=SOURCE_AGENT,
            seq=self.buffer.next_seq(SOURCE_AGENT),
            ts=time.time(),
            level=LogLevel.WARNING,
            logger=log.name,
            msg=DROP_REPORT_MSG,
            fields=fields,
        )
        await self._publish(nc, pending)
        self._reported = drops
        self.reports += 1
