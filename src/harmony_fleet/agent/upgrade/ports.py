"""The small seams the upgrade driver needs besides the executor: status, time, after-commit.

* :class:`StatusSink` writes the device's ``UpgradeStatus`` (the NATS KV adapter in production).
  A write may raise :class:`~harmony_fleet.errors.OutcomeUnknown` and still have been applied:
  the driver retries the *same* value, which is idempotent.
* :class:`Clock` gives wall time for the status and timers for the machine's deadlines. Tests
  use ``harmony_fleet.testing.FakeClock`` and move time by hand: no test ever sleeps.
* :class:`AfterCommit` is the device side of the post-commit watch and of what an upgrade
  leaves on disk: the notes the launcher reads and writes, the hashes of installed versions,
  garbage collection (``adapters.os.post_commit.PostCommitFiles``). It is separate from the
  executor on purpose: the same files serve the process and the systemd executor, and a device
  without one simply has no watch (the new main says Succeeded as soon as it runs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import UpgradeStatus
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.watch import RollbackNote


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


class AfterCommit(Protocol):
    """What happens around a commit on the device's disk (see the module docstring)."""

    @property
    def watched(self) -> bool:
        """Does a launcher act on the watch note here (process-mode supervisor: yes)?"""
        ...

    async def arm_watch(self, plan: WatchPlan) -> None:
        """Write the watch note durably (the old agent, just before its swap)."""
        ...

    async def end_watch(self, upgrade_id: UpgradeId) -> None:
        """Remove the watch and rollback notes naming ``upgrade_id`` (idempotent)."""
        ...

    async def rollback_note(self) -> RollbackNote | None:
        """The launcher's note after a post-commit rollback, if there is one."""
        ...

    async def artifact_sha256(self, version: Version) -> str | None:
        """SHA-256 of the installed artifact of ``version`` (None if it is not there)."""
        ...

    async def collect_garbage(self, protect: frozenset[Version], keep: int) -> list[Version]:
        """Remove old versions (never ``protect``, ``current`` or one in use); the removed."""
        ...
