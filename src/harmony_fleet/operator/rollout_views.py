"""Where a rollout pass gets the fleet from: the buckets, or the operator's own memory.

:func:`~harmony_fleet.operator.rollouts.drive_once` asks a :class:`FleetSource` for the
engine's views of the devices and for a rollout's progress records, and tells it what it wrote.

* :class:`BucketFleet` reads whole buckets every pass (the registry, every status and marker,
  the progress records): what a pass run on its own needs (tests, ``drive_once`` by hand).
* :class:`FleetMemory` is what ``fleet operator`` uses: the devices come from the operator's
  in-memory registry, statuses and markers from what its upgrade coordinator takes from its
  watches (:meth:`~harmony_fleet.operator.coordinator.Coordinator.add_listeners`), and each
  rollout's progress records are read once, then kept from the writes (the operator is their
  one writer). At 10,000 devices a pass then reads no bucket but the rollout's spec and status,
  and :attr:`FleetMemory.changed` says when something a plan reads changed, so passes are woken
  by changes and not by a clock (docs/rollouts.md). A restarted operator reads everything
  again: the passes stay restart-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol, TypeVar

from harmony_fleet.adapters.nats.fleet_kv import ROLLOUT_PROGRESS, FleetKV
from harmony_fleet.adapters.nats.kv import Entry, Undecodable
from harmony_fleet.contracts import DeviceId, DeviceProgress, UpgradeMarker, UpgradeStatus
from harmony_fleet.core.rollout import DeviceView, UpgradeView
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.registry import Registry

log = logging.getLogger(__name__)

T = TypeVar("T")


def _values(entries: Iterable[Entry[T] | Undecodable]) -> list[T]:
    """The decodable values (an undecodable one is left out, as the registry does)."""
    return [e.value for e in entries if isinstance(e, Entry)]


class FleetSource(Protocol):
    async def views(self) -> list[DeviceView]:
        """Every device of the fleet as the engine sees it."""
        ...

    async def progress(self, name: str) -> dict[DeviceId, DeviceProgress]:
        """Rollout ``name``'s progress records, by device."""
        ...

    def wrote(self, name: str, record: DeviceProgress) -> None:
        """A progress record of rollout ``name`` was written."""
        ...


async def _progress_of(kv: FleetKV, name: str) -> dict[DeviceId, DeviceProgress]:
    progress_kv = await kv.open(ROLLOUT_PROGRESS)
    return {
        DeviceId(record.device_id): record
        for record in _values(await progress_kv.snapshot())
        if record.rollout == name
    }


def _view(
    device: str,
    *,
    online: bool,
    version: str,
    labels: dict[str, str],
    status: UpgradeStatus | None,
    marker_upgrade_id: str | None,
) -> DeviceView:
    return DeviceView(
        device_id=DeviceId(device),
        online=online,
        agent_version=version,
        labels=labels,
        upgrade=UpgradeView.of(status) if status is not None else None,
        marker_upgrade_id=marker_upgrade_id,  # type: ignore[arg-type]
    )


class BucketFleet:
    """Everything read from the buckets at every call."""

    def __init__(self, kv: FleetKV) -> None:
        self.kv = kv

    async def views(self) -> list[DeviceView]:
        records = _values(await (await self.kv.devices()).snapshot())
        statuses = {s.device_id: s for s in _values(await (await self.kv.statuses()).snapshot())}
        markers: dict[str, UpgradeMarker] = {
            m.device_id: m for m in _values(await (await self.kv.markers()).snapshot())
        }
        out = []
        for record in records:
            marker = markers.get(record.device_id)
            out.append(
                _view(
                    record.device_id,
                    online=record.online,
                    version=record.current_version,
                    labels=dict(record.labels),
                    status=statuses.get(record.device_id),
                    marker_upgrade_id=marker.upgrade_id if marker is not None else None,
                )
            )
        return out

    async def progress(self, name: str) -> dict[DeviceId, DeviceProgress]:
        return await _progress_of(self.kv, name)

    def wrote(self, name: str, record: DeviceProgress) -> None:
        """Nothing kept: the next call reads the bucket again."""


class FleetMemory:
    """The fleet as the operator holds it in memory (see the module docstring)."""

    def __init__(self, kv: FleetKV, registry: Registry, coordinator: Coordinator) -> None:
        self.kv = kv
        self.registry = registry
        self.statuses: dict[str, UpgradeStatus] = {}
        self.markers: dict[str, str] = {}
        """Each device's marker's upgrade id."""
        self.changed = asyncio.Event()
        """Set when anything a plan reads changed (cleared by whoever waits on it)."""
        self._progress: dict[str, dict[DeviceId, DeviceProgress]] = {}
        coordinator.add_listeners(on_marker=self._on_marker, on_status=self._on_status)
        registry.add_change_listener(self._on_device)

    def _on_marker(self, marker: UpgradeMarker, _now: float) -> None:
        if self.markers.get(marker.device_id) != marker.upgrade_id:
            self.markers[marker.device_id] = marker.upgrade_id
            self.changed.set()

    def _on_status(self, status: UpgradeStatus, _now: float) -> None:
        if self.statuses.get(status.device_id) != status:
            self.statuses[status.device_id] = status
            self.changed.set()

    def _on_device(self, _device: str) -> None:
        self.changed.set()

    async def load(self) -> None:
        """Read every status and marker once (the coordinator's watches may have delivered
        some already: a value they delivered is newer and is kept)."""
        for status in _values(await (await self.kv.statuses()).snapshot()):
            self.statuses.setdefault(status.device_id, status)
        for marker in _values(await (await self.kv.markers()).snapshot()):
            self.markers.setdefault(marker.device_id, marker.upgrade_id)
        self.changed.set()

    async def views(self) -> list[DeviceView]:
        now_statuses, markers = self.statuses, self.markers
        return [
            _view(
                device,
                online=state.online,
                version=state.current_version,
                labels=state.labels,
                status=now_statuses.get(device),
                marker_upgrade_id=markers.get(device),
            )
            for device, state in self.registry.devices.items()
        ]

    async def progress(self, name: str) -> dict[DeviceId, DeviceProgress]:
        kept = self._progress.get(name)
        if kept is None:
            kept = self._progress[name] = await _progress_of(self.kv, name)
        return dict(kept)

    def wrote(self, name: str, record: DeviceProgress) -> None:
        self._progress.setdefault(name, {})[DeviceId(record.device_id)] = record

    def forget(self, name: str) -> None:
        """Read rollout ``name``'s records from the bucket again at its next pass."""
        self._progress.pop(name, None)
