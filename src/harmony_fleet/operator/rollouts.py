"""One pass of a rollout: read what the operator knows, ask the engine, perform its plan.

:func:`drive_once` is the operator's side of the pure engine (``core.rollout``, docs/rollouts.md):
it reads the rollout, its status and its progress records, the devices, their upgrade statuses
and markers (from a :class:`~harmony_fleet.operator.rollout_views.FleetSource`: the buckets, or
the operator's memory), and the release being rolled out; calls
:func:`~harmony_fleet.core.rollout.plan`; then writes, in this order, the changed progress
records, the markers (through :func:`~harmony_fleet.adapters.nats.fleet_kv.write_marker`,
compare-and-set), and the status. Everything it needs is in KV, so a pass after an operator
restart, or a pass repeated after a crash between two writes, carries on where the last one
stopped (the engine re-emits a marker a record names but the device does not hold, with the same
upgrade id).

:class:`RolloutLoop` is the operator extension ``fleet operator`` always runs. In the operator it
plans from :class:`~harmony_fleet.operator.rollout_views.FleetMemory` (no bucket read but the
rollouts' specs and statuses) and a pass runs when something a plan reads changed (a status, a
marker, a device's presence, version or labels, a rollout's spec) or when the last plans'
``wake_at`` came, at most one pass every ``min_gap_s`` (whatever changed in between is taken at
once), and at the latest every ``idle_s`` (a release published later). Run on its own
(:meth:`RolloutLoop.run` without a memory) it reads the buckets every ``every_s``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_fleet._tasks import cancel_and_wait, wait_event
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
    write_marker,
)
from harmony_fleet.contracts import (
    DeviceProgress,
    RolloutStatus,
    UpgradeMarker,
)
from harmony_fleet.contracts.rollout import RolloutPhase, progress_key
from harmony_fleet.contracts.upgrade import ArtifactSource, UpgradeTimeouts
from harmony_fleet.core.rollout import Plan, Start, plan
from harmony_fleet.core.upgrade.trust import SignedRelease
from harmony_fleet.errors import Conflict, FleetError, NotFound
from harmony_fleet.operator.releases import ReleaseLookup, release_lookup
from harmony_fleet.operator.rollout_views import BucketFleet, FleetMemory, FleetSource

if TYPE_CHECKING:
    from harmony_fleet.adapters.nats.connection import NatsClient
    from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)

#: Writes a pass has in flight at once (progress records, then markers).
WRITE_CONCURRENCY = 256

#: Phases in which a pass has nothing to do (Done: until an undo is asked for).
IDLE_PHASES = frozenset({RolloutPhase.DONE, RolloutPhase.UNDONE})

#: ``requested_by`` of the markers a rollout writes.
REQUESTED_BY_PREFIX = "rollout/"


async def drive_once(
    kv: FleetKV,
    name: str,
    *,
    now: float,
    releases: ReleaseLookup,
    fleet: FleetSource | None = None,
) -> Plan:
    """One pass of rollout ``name`` at time ``now``; the plan it performed. ``releases`` turns
    the rollout's version into an artifact (signed metadata, :mod:`~harmony_fleet.operator.
    releases`). ``fleet``: where the devices and the progress
    records come from (left out: the buckets, read whole)."""
    fleet = fleet or BucketFleet(kv)
    spec_entry = await (await kv.open(ROLLOUTS)).get(name)
    if spec_entry is None:
        raise NotFound(f"no rollout {name!r}; create it with `fleet rollout create`")
    rollout = spec_entry.value
    statuses_kv = await kv.open(ROLLOUT_STATUSES)
    status_entry = await statuses_kv.get(name)
    status = status_entry.value if status_entry is not None else RolloutStatus(name=name)

    progress_kv = await kv.open(ROLLOUT_PROGRESS)
    progress = await fleet.progress(name)
    release = await releases(rollout.version)
    devices = await fleet.views()
    # A plan of 10,000 devices is a few tenths of a second of CPU (more on a busy machine): on
    # a thread, so the operator's event loop goes on reading its socket meanwhile (heartbeats,
    # watches); a server whose writes to us stall for seconds closes the connection. The
    # inputs are the pass's own (the views and records were built for it).
    result = await asyncio.to_thread(
        functools.partial(
            plan,
            rollout,
            status,
            devices,
            progress,
            now=now,
            artifact_size=release.length if release is not None else None,
            skip=release.skip if release is not None else (),
        )
    )
    sem = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def put_record(record: DeviceProgress) -> None:
        async with sem:
            await progress_kv.put(progress_key(name, record.device_id), record)
        fleet.wrote(name, record)

    async def put_marker(start: Start) -> None:
        async with sem:
            await _write_marker(kv, start, release, name=name, now=now, timeouts=rollout.timeouts)

    # Every record before any marker, every marker before the status; inside each step the
    # writes go out together (a wave of 1,000 one after the other is a minute on a busy server).
    await _all(put_record(r) for r in result.writes)
    await _all(put_marker(s) for s in result.starts)
    if result.status != status:
        await statuses_kv.put(name, result.status)
    return result


async def _all(writes: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``writes`` together; once all ended, raise the first error, if any."""
    results = await asyncio.gather(*writes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _write_marker(
    kv: FleetKV,
    start: Start,
    release: SignedRelease | None,
    *,
    name: str,
    now: float,
    timeouts: UpgradeTimeouts,
) -> None:
    """The marker for one start; a missing release or a lost race is logged, not raised: the
    engine asks again on the next pass, and a marker another requester wrote turns into a
    Superseded status the engine counts as skipped."""
    if start.undo:
        if start.sha256 is None:
            return
        marker = UpgradeMarker(
            upgrade_id=start.upgrade_id,
            device_id=start.device_id,
            target_version=start.target_version,
            artifact_url="",
            sha256=start.sha256,
            requested_at=now,
            requested_by=f"{REQUESTED_BY_PREFIX}{name}/undo",
            source=ArtifactSource.INSTALLED,
            timeouts=timeouts,
        )
    elif release is None:
        log.warning(
            "rollout %s: no release %s (fleet release publish); nothing started",
            name,
            start.target_version,
        )
        return
    else:
        marker = UpgradeMarker(
            upgrade_id=start.upgrade_id,
            device_id=start.device_id,
            target_version=start.target_version,
            artifact_url=release.url,
            sha256=release.sha256,
            size=release.length,
            requested_at=now,
            requested_by=f"{REQUESTED_BY_PREFIX}{name}",
            timeouts=timeouts,
        )
    try:
        await write_marker(kv, marker)
    except Conflict:
        log.warning("rollout %s: marker for %s lost a race", name, start.device_id)


async def drive_all(
    kv: FleetKV,
    *,
    now: float,
    releases: ReleaseLookup,
    fleet: FleetSource | None = None,
) -> dict[str, Plan]:
    """One pass of every rollout not done or undone (a failing one is logged, the others go
    on); a done rollout is planned again once its undo is asked for."""
    statuses = await kv.open(ROLLOUT_STATUSES)
    plans: dict[str, Plan] = {}
    for name in sorted(await (await kv.open(ROLLOUTS)).keys()):
        try:
            status = await statuses.get(name)
            if status is not None and status.value.phase in IDLE_PHASES:
                spec = await (await kv.open(ROLLOUTS)).get(name)
                if status.value.phase is RolloutPhase.UNDONE or (
                    spec is not None and not spec.value.undo_requested
                ):
                    continue  # nothing left to plan until someone asks for an undo
            plans[name] = await drive_once(kv, name, now=now, releases=releases, fleet=fleet)
        except FleetError as exc:
            log.warning("rollout %s: pass failed: %s", name, exc)
    return plans


@dataclass
class RolloutLoop:
    """An operator extension: :meth:`__call__` runs passes until the operator stops."""

    every_s: float = 1.0
    """Between two passes when run without a memory (:meth:`run` on its own)."""
    min_gap_s: float = 1.0
    """The least time between two passes' starts in the operator (changes coalesce)."""
    idle_s: float = 5.0
    """The most time between two passes in the operator when nothing changed."""
    clock: Callable[[], float] = time.time
    trust_root: Path | None = None
    """The release repository's root (``fleet operator --tuf-root``): versions are resolved
    through signed metadata; None: none is (each pass logs that the flag is missing)."""
    state_dir: Path = Path(".")
    """Where the signed metadata followed is kept (``<state_dir>/rollouts``)."""
    releases: ReleaseLookup | None = None
    """A lookup given as it is (tests, the simulator's benchmarks); None: from ``trust_root``."""
    passes: int = 0
    __name__ = "rollouts"

    async def run(
        self,
        kv: FleetKV,
        stop: asyncio.Event,
        releases: ReleaseLookup,
        memory: FleetMemory | None = None,
    ) -> None:
        watch = asyncio.ensure_future(self._watch_specs(kv, memory)) if memory else None
        try:
            while not stop.is_set():
                started = time.monotonic()
                if memory is not None:
                    memory.changed.clear()
                wake_at = await self._pass(kv, releases, memory)
                if memory is None:
                    await _wait(stop, self.every_s)
                    continue
                now = self.clock()
                wait = self.idle_s if wake_at is None else min(self.idle_s, wake_at - now)
                await _wait_any(stop, memory.changed, max(0.0, wait))
                await _wait(stop, self.min_gap_s - (time.monotonic() - started))
        finally:
            if watch is not None:
                await cancel_and_wait([watch])

    async def _pass(
        self, kv: FleetKV, releases: ReleaseLookup, memory: FleetMemory | None
    ) -> float | None:
        try:
            await kv.verify_fence()  # a deposed operator drives no rollout (ADR-023)
            plans = await drive_all(kv, now=self.clock(), releases=releases, fleet=memory)
        except FleetError as exc:  # NATS away: say so, try again later
            log.warning("rollout pass failed: %s", exc)
            return None
        finally:
            self.passes += 1
        wakes = [p.wake_at for p in plans.values() if p.wake_at is not None and not p.finished]
        return min(wakes) if wakes else None

    @staticmethod
    async def _watch_specs(kv: FleetKV, memory: FleetMemory | None) -> None:
        """Wake a pass whenever a rollout's spec is written (created, paused, undone...)."""
        assert memory is not None
        async for _entry in (await kv.open(ROLLOUTS)).values():
            memory.changed.set()

    async def __call__(self, operator: Operator, nc: NatsClient) -> None:
        kv = FleetKV(nc, fence=operator.lease)  # every write fenced by the lease (ADR-023)
        memory = FleetMemory(kv, operator.registry, operator.coordinator)
        while not operator.stop.is_set():
            try:
                await memory.load()
                break
            except FleetError as exc:
                log.warning("rollouts: upgrade buckets not read yet: %s", exc)
                await _wait(operator.stop, 1.0)
        releases = self.releases or release_lookup(nc, self.trust_root, self.state_dir / "rollouts")
        await self.run(kv, operator.stop, releases, memory)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    if seconds > 0:
        await wait_event(stop, seconds)


async def _wait_any(stop: asyncio.Event, changed: asyncio.Event, seconds: float) -> None:
    """Until ``stop`` or ``changed`` is set, for ``seconds`` at most."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(changed.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
