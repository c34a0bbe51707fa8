"""What a plan asks the operator to do: markers to write, records to write, a status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harmony_fleet.contracts.ids import DeviceId, UpgradeId, Version
from harmony_fleet.contracts.rollout import (
    DeviceProgress,
    DeviceState,
    RolloutPhase,
    RolloutStatus,
)
from harmony_fleet.core.rollout.phases import TERMINAL


@dataclass(frozen=True, kw_only=True)
class Start:
    """A marker to write now (after the device's record)."""

    device_id: DeviceId
    upgrade_id: UpgradeId
    target_version: Version
    wave: int
    undo: bool = False
    """An undo: the marker's source is ``installed`` and ``sha256`` the kept version's hash."""
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What the operator does next, and every device's state for the status view."""

    status: RolloutStatus
    writes: tuple[DeviceProgress, ...]
    starts: tuple[Start, ...]
    states: Mapping[DeviceId, tuple[DeviceState, str]]
    """Every device of the rollout: its state and why (pending ones included)."""
    undo_states: Mapping[DeviceId, tuple[DeviceState, str]]
    wake_at: float | None
    """Call :func:`plan` again at this time at the latest (None: only when something changes)."""

    @property
    def halted(self) -> bool:
        return self.status.phase is RolloutPhase.HALTED

    @property
    def finished(self) -> bool:
        return self.status.phase in TERMINAL
