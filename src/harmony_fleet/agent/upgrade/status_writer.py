"""Publishing the upgrade status without ever blocking the machine, and without losing an end.

A status write goes through NATS KV and can time out while the server is away; the value may
still land later (see docs on OutcomeUnknown). So the writer keeps, per upgrade, only the
*latest* status, and one background task that writes them in order, retrying the same value
with capped backoff until it is stored or a newer status of the same upgrade replaces it.
Statuses of *different* upgrades are never merged: when one upgrade ends and the next begins in
the same step (a newer marker supersedes it, or waited for it), the end is written before the
beginning, so whoever follows the first one sees it end (the key keeps a short history).
Rewriting an identical value is idempotent, and since the agent is the only writer of its
device's key, no compare-and-set is needed.

Only a :class:`~harmony_fleet.errors.TemporaryError` is retried. A permanent one (the server
refused the value: ``adapters.nats.errors`` maps a 400 answer to ``Refused``) is logged and the
value given up, and so is an error outside the tree: retrying either would never end, and a
newer status still gets its own attempt.
"""

from __future__ import annotations

import asyncio
import logging

from harmony_fleet.agent.upgrade.ports import Clock, StatusSink
from harmony_fleet.contracts.ids import DeviceId, InstanceId
from harmony_fleet.contracts.upgrade import UpgradeStatus
from harmony_fleet.core.upgrade.effects import WriteStatus
from harmony_fleet.core.upgrade.records import LocalState
from harmony_fleet.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


class StatusWriter:
    """Latest-value-wins publisher of :class:`UpgradeStatus`, per upgrade, in order."""

    def __init__(self, sink: StatusSink, clock: Clock) -> None:
        self._sink = sink
        self._clock = clock
        self._latest: UpgradeStatus | None = None
        self._queue: list[UpgradeStatus] = []
        self._written: UpgradeStatus | None = None
        self.failures = 0
        """Writes that failed for a reason that may pass (counted, never reset)."""
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def latest(self) -> UpgradeStatus | None:
        return self._latest

    @property
    def reachable(self) -> bool:
        """Can statuses get through now: the sink is connected and the last write did not fail?"""
        return self._sink.connected and not self._failing

    @property
    def written(self) -> UpgradeStatus | None:
        """The last status the sink accepted."""
        return self._written

    def publish(self, status: UpgradeStatus) -> None:
        """Queue ``status`` (replacing a queued one of the same upgrade); start the writer."""
        self._latest = status
        if self._queue and self._queue[-1].upgrade_id == status.upgrade_id:
            self._queue[-1] = status
        else:
            self._queue.append(status)
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = BACKOFF_START_S
        while self._queue:
            status = self._queue[0]
            try:
                await self._sink.write(status)
            except TemporaryError as exc:
                self.failures += 1
                self._failing = True
                log.warning(
                    "status write failed, retrying the same value",
                    extra={"phase": status.phase.value, "error": repr(exc), "retry_in": delay},
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            except PermanentError as exc:
                log.error("status rejected", extra={"phase": status.phase.value, "error": str(exc)})
            except Exception:
                log.exception("status write failed", extra={"phase": status.phase.value})
            self._failing = False
            if self._queue and self._queue[0] is status:
                self._queue.pop(0)  # else a newer status of this upgrade replaced it: write that
            self._written = status
            delay = BACKOFF_START_S
        self._idle.set()

    async def flush(self) -> None:
        """Wait until the latest status is written (or rejected)."""
        await self._idle.wait()

    async def close(self) -> None:
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._idle.set()


def status_of(
    w: WriteStatus, *, device: DeviceId, instance: InstanceId, now: float, local: LocalState
) -> UpgradeStatus:
    """The wire status for one ``WriteStatus`` effect, with what only the driver knows: who
    writes it, when, and the version kept to return to (``fleet rollback`` reads it here)."""
    previous = local.previous
    return w.upgrade.status(
        phase=w.phase,
        device_id=device,
        instance_id=instance,
        updated_at=now,
        progress=w.progress,
        pending_upgrade_id=w.pending_upgrade_id,
        watch_until=w.watch_until,
        previous_version=previous,
        previous_sha256=local.installed.get(previous) if previous else None,
    )
