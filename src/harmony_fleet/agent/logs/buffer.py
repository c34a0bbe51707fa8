"""The bounded hand-off between code that logs and the task that ships: never blocks a writer.

Any thread may :meth:`LogBuffer.offer` a line: it costs a lock held for a few arithmetic
operations, a ``deque.append`` and, at most once per batch, a thread-safe wake-up of the shipping
task. Nothing here waits for NATS. What cannot be kept is dropped and counted by reason:

* ``rate_limit``: the source's token bucket was empty (lines/s with a burst, per source);
* ``buffer_full``: the buffer was full while connected (the oldest line is evicted: the newest
  lines are the ones that explain what is happening now);
* ``disconnected``: a line evicted while NATS was unreachable, or lost in a failed publish;
* ``malformed``: journal input that could not be parsed (counted by the journal reader).

``seq`` is numbered per source at offer time, before any drop, so a reader sees every dropped
line as a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from harmony_fleet.agent.logs.lines import Pending
from harmony_fleet.contracts import LogLevel


class DropReason(enum.StrEnum):
    RATE_LIMIT = "rate_limit"
    BUFFER_FULL = "buffer_full"
    DISCONNECTED = "disconnected"
    MALFORMED = "malformed"


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``rate <= 0`` means unlimited."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._last = now

    def take(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False


class LogBuffer:
    """A bounded deque of :class:`Pending` lines with per-source rate limits and drop counters."""

    def __init__(
        self,
        *,
        capacity: int = 1000,
        rate: float = 50.0,
        burst: float = 200.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lines: deque[Pending] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._seq: dict[str, int] = {}
        self.drops: dict[str, int] = {reason.value: 0 for reason in DropReason}
        self.offered = 0
        self.connected = False
        """Set by the shipper: decides whether an eviction counts as buffer_full or
        disconnected."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._event: asyncio.Event | None = None
        self._wake_pending = False

    # -- writers (any thread) -------------------------------------------------------------------
    def offer(
        self,
        source: str,
        ts: float,
        level: LogLevel,
        logger: str,
        msg: str,
        fields: dict[str, Any] | None = None,
    ) -> bool:
        """Keep the line if the rate limit allows (evicting the oldest if full); never blocks."""
        seq = self.admit(source)
        if seq is None:
            return False
        self.put(Pending(source, seq, ts, level, logger, msg, fields))
        return True

    def admit(self, source: str) -> int | None:
        """Number the next line of ``source``; None (and a counted drop) if over its rate.

        Split from :meth:`put` so that a caller can skip formatting a line that is refused.
        """
        with self._lock:
            self.offered += 1
            seq = self._seq[source] = self._seq.get(source, 0) + 1
            bucket = self._buckets.get(source)
            if bucket is None:
                bucket = self._buckets[source] = TokenBucket(self.rate, self.burst, self._clock())
            if not bucket.take(self._clock()):
                self.drops[DropReason.RATE_LIMIT] += 1
                return None
            return seq

    def put(self, line: Pending) -> None:
        """Append an admitted line, evicting (and counting) the oldest if the buffer is full."""
        with self._lock:
            if len(self._lines) == self.capacity:
                reason = DropReason.BUFFER_FULL if self.connected else DropReason.DISCONNECTED
                self.drops[reason] += 1
            self._lines.append(line)
        self._wake()

    def count(self, reason: DropReason, n: int = 1) -> None:
        with self._lock:
            self.drops[reason] += n

    def next_seq(self, source: str) -> int:
        """A sequence number for a line that bypasses the buffer (the drop report)."""
        with self._lock:
            seq = self._seq[source] = self._seq.get(source, 0) + 1
            return seq

    def _wake(self) -> None:
        if self._wake_pending or self._event is None or self._loop is None:
            return
        self._wake_pending = True
        if threading.get_ident() == self._loop_thread:
            self._event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to wake
                self._loop.call_soon_threadsafe(self._event.set)

    # -- the shipping task (the event loop's thread) ----------------------------------------------
    def bind(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """Attach to the shipping task's loop; returns the event that says "lines are waiting"."""
        self._event = asyncio.Event()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        if self._lines:
            self._event.set()
        return self._event

    def unbind(self) -> None:
        self._loop = None
        self._event = None

    def rearm(self) -> None:
        """Called by the shipper before it takes lines, so later offers wake it again."""
        if self._event is not None:
            self._event.clear()
        self._wake_pending = False

    def take(self, limit: int) -> list[Pending]:
        """Up to ``limit`` of the oldest lines, removed from the buffer."""
        with self._lock:
            n = min(limit, len(self._lines))
            return [self._lines.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._lines)

    def snapshot(self) -> dict[str, int]:
        """The drop counters (a copy), for reports and tests."""
        with self._lock:
            return dict(self.drops)
