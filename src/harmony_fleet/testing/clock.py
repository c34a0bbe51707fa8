"""A clock whose time moves only when a test says so.

Timers and sleeps registered on it fire, in deadline order, during :meth:`FakeClock.advance`.
Callbacks run synchronously inside ``advance``; a sleeping coroutine resumes at the test's next
``await``. Combined with the condition-based waits of the other fakes, no test needs a real sleep.

Like a real device it has two clocks: the wall clock (:meth:`FakeClock.now`, what statuses
show) and the timers' monotonic one. :meth:`FakeClock.step_wall` steps the first alone, as an
NTP correction does: no timer fires or moves.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Implements the agent's ``Clock`` protocol with hand-moved time."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = 0.0
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now + self._wall_offset

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (either way); timers are not affected."""
        self._wall_offset += seconds

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self._now + max(delay_s, 0.0), next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        for count, waiter in list(self._waiters):
            if self.pending >= count and not waiter.done():
                waiter.set_result(None)
                self._waiters.remove((count, waiter))
        return timer

    async def wait_for_pending(self, count: int = 1) -> None:
        """Wait until at least ``count`` live timers are armed (a retry or a deadline)."""
        if self.pending >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await waiter

    async def sleep(self, delay_s: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(delay_s, wake)
        try:
            await future
        finally:
            timer.cancel()

    @property
    def pending(self) -> int:
        """Timers armed and not cancelled."""
        return sum(1 for t in self._heap if not t.cancelled)

    def next_deadline(self) -> float | None:
        live = [t.when for t in self._heap if not t.cancelled]
        return min(live) if live else None

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``, firing due timers in order; return how many fired."""
        target = self._now + seconds
        fired = 0
        while self._heap and self._heap[0].when <= target:
            timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.when)
            timer.callback()
            fired += 1
        self._now = target
        return fired
