"""One pass of a rollout: read what NATS knows, ask the engine, perform its plan.

:func:`drive_once` is the operator's side of the pure engine (``core.rollout``, docs/rollouts.md):
it reads the rollout, its status and its progress records, the registry, every upgrade status
and marker, and the release being rolled out; calls :func:`~harmony_fleet.core.rollout.plan`;
then writes, in this order, the changed progress records, the markers (through
:func:`~harmony_fleet.adapters.nats.fleet_kv.write_marker`, compare-and-set), and the status.
Everything it needs is in KV, so a pass after an operator restart, or a pass repeated after a
crash between two writes, carries on where the last one stopped (the engine re-emits a marker a
record names but the device does not hold, with the same upgrade id).

It reads whole buckets (``snapshot``) on every pass: right for tests and small fleets, not for
10,000 devices, where the operator's in-memory registry and coordinator must feed the views
instead (docs/rollouts.md, "What is not built").

:class:`RolloutLoop` is the operator extension that runs a pass of every rollout not undone
every ``every_s`` (``fleet operator`` always runs it: with no rollout a pass lists one empty
bucket). Passes are coalesced by construction: whatever changed in between is read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
    write_marker,
)
from harmony_fleet.adapters.nats.kv import Entry, Undecodable
from harmony_fleet.contracts import (
    DeviceId,
    DeviceProgress,
    RolloutStatus,
    UpgradeMarker,
    UpgradeStatus,
)
from harmony_fleet.contracts.rollout import RolloutPhase, progress_key
from harmony_fleet.contracts.upgrade import ArtifactSource, UpgradeTimeouts
from harmony_fleet.core.rollout import DeviceView, Plan, Start, UpgradeView, plan
from harmony_fleet.core.upgrade.trust import SignedRelease
from harmony_fleet.errors import Conflict, FleetError, NotFound
from harmony_fleet.operator.releases import ReleaseLookup, release_lookup

if TYPE_CHECKING:
    from harmony_fleet.adapters.nats.connection import NatsClient
    from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``requested_by`` of the markers a rollout writes.
REQUESTED_BY_PREFIX = "rollout/"


def _values(entries: Iterable[Entry[T] | Undecodable]) -> list[T]:
    """The decodable values (an undecodable one is left out, as the registry does)."""
    return [e.value for e in entries if isinstance(e, Entry)]


async def drive_once(kv: FleetKV, name: str, *, now: float, releases: ReleaseLookup) -> Plan:
    """One pass of rollout ``name`` at time ``now``; the plan it performed. ``releases`` turns
    the rollout's version into an artifact (signed metadata, :mod:`~harmony_fleet.operator.
    releases`)."""
    spec_entry = await (await kv.open(ROLLOUTS)).get(name)
    if spec_entry is None:
        raise NotFound(f"no rollout {name!r}; create it with `fleet rollout create`")
    rollout = spec_entry.value
    statuses_kv = await kv.open(ROLLOUT_STATUSES)
    status_entry = await statuses_kv.get(name)
    status = status_entry.value if status_entry is not None else RolloutStatus(name=name)

    progress_kv = await kv.open(ROLLOUT_PROGRESS)
    progress: dict[DeviceId, DeviceProgress] = {}
    for record in _values(await progress_kv.snapshot()):
        if record.rollout == name:
            progress[DeviceId(record.device_id)] = record

    release = await releases(rollout.version)
    devices = await _views(kv)
    result = plan(
        rollout,
        status,
        devices,
        progress,
        now=now,
        artifact_size=release.length if release is not None else None,
        skip=release.skip if release is not None else (),
    )
    for record in result.writes:
        await progress_kv.put(progress_key(name, record.device_id), record)
    for start in result.starts:
        await _write_marker(kv, start, release, name=name, now=now, timeouts=rollout.timeouts)
    if result.status != status:
        await statuses_kv.put(name, result.status)
    return result


async def _views(kv: FleetKV) -> list[DeviceView]:
    records = _values(await (await kv.devices()).snapshot())
    statuses: Mapping[str, UpgradeStatus] = {
        s.device_id: s for s in _values(await (await kv.statuses()).snapshot())
    }
    markers: Mapping[str, UpgradeMarker] = {
        m.device_id: m for m in _values(await (await kv.markers()).snapshot())
    }
    views = []
    for record in records:
        device = record.device_id
        status = statuses.get(device)
        marker = markers.get(device)
        views.append(
            DeviceView(
                device_id=DeviceId(device),
                online=record.online,
                agent_version=record.current_version,
                labels=dict(record.labels),
                upgrade=UpgradeView.of(status) if status is not None else None,
                marker_upgrade_id=marker.upgrade_id if marker is not None else None,
            )
        )
    return views


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


async def drive_all(kv: FleetKV, *, now: float, releases: ReleaseLookup) -> dict[str, Plan]:
    """One pass of every rollout not undone (a failing one is logged, the others go on)."""
    statuses = await kv.open(ROLLOUT_STATUSES)
    plans: dict[str, Plan] = {}
    for name in sorted(await (await kv.open(ROLLOUTS)).keys()):
        try:
            status = await statuses.get(name)
            if status is not None and status.value.phase is RolloutPhase.UNDONE:
                continue
            plans[name] = await drive_once(kv, name, now=now, releases=releases)
        except FleetError as exc:
            log.warning("rollout %s: pass failed: %s", name, exc)
    return plans


@dataclass
class RolloutLoop:
    """An operator extension: :meth:`__call__` runs passes until the operator stops."""

    every_s: float = 1.0
    clock: Callable[[], float] = time.time
    trust_root: Path | None = None
    """The release repository's root (``fleet operator --tuf-root``): versions are resolved
    through signed metadata; None: none is (each pass logs that the flag is missing)."""
    state_dir: Path = Path(".")
    """Where the signed metadata followed is kept (``<state_dir>/rollouts``)."""
    __name__ = "rollouts"

    async def run(self, kv: FleetKV, stop: asyncio.Event, releases: ReleaseLookup) -> None:
        while not stop.is_set():
            try:
                await kv.verify_fence()  # a deposed operator drives no rollout (ADR-023)
                await drive_all(kv, now=self.clock(), releases=releases)
            except FleetError as exc:  # NATS away: say so, try again later
                log.warning("rollout pass failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)

    async def __call__(self, operator: Operator, nc: NatsClient) -> None:
        releases = release_lookup(nc, self.trust_root, self.state_dir / "rollouts")
        await self.run(FleetKV(nc, fence=operator.lease), operator.stop, releases)
