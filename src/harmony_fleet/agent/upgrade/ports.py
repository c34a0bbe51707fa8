"""The small seams the upgrade driver needs besides the device's (``core.upgrade.device``).

* :class:`StatusSink` writes the device's ``UpgradeStatus`` (the NATS KV adapter in production).
  A write may raise :class:`~harmony_fleet.errors.OutcomeUnknown` and still have been applied:
  the driver retries the *same* value, which is idempotent.
* :class:`Clock` gives wall time for the status and timers for the machine's deadlines. Tests
  use ``harmony_fleet.testing.FakeClock`` and move time by hand: no test ever sleeps. Its
  ``now`` is wall time, for people (statuses); every duration the machine waits for is a timer
  on the event loop's monotonic clock (``call_later``), which a wall-clock step does not move.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from harmony_fleet.contracts.upgrade import UpgradeStatus


class StatusSink(Protocol):
    """Where the agent publishes its upgrade status (KV bucket ``fleet_upgrade_status``)."""

    async def write(self, status: UpgradeStatus) -> None:
        """Store ``status`` under the device's key. May raise TemporaryError/OutcomeUnknown."""
        ...

    @property
    def connected(self) -> bool:
        """Is the server reachable, as far as the client knows (False while NATS is away)?"""
        ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Wall time, timers and sleeps, all from one source."""

    def now(self) -> float:
        """Unix time in seconds (goes into the status)."""
        ...

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        """Call ``callback`` once after ``delay_s`` seconds unless cancelled."""
        ...

    async def sleep(self, delay_s: float) -> None: ...


class LoopClock:
    """The real clock: ``time.time`` and the running event loop's timers."""

    def now(self) -> float:
        return time.time()

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay_s, callback)

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
