"""The progress records as they stand during one plan, and which of them changed."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from harmony_fleet.contracts.ids import DeviceId
from harmony_fleet.contracts.rollout import DeviceProgress, DeviceState, Rollout


class Ledger:
    """One plan's working copy of the records: :meth:`put` changes a record (stamping
    ``updated_at``) and remembers it in :attr:`changed`, the records the operator writes."""

    def __init__(
        self, rollout: Rollout, progress: Mapping[DeviceId, DeviceProgress], now: float
    ) -> None:
        self.rollout = rollout
        self.now = now
        self.records: dict[DeviceId, DeviceProgress] = dict(progress)
        self.changed: dict[DeviceId, DeviceProgress] = {}

    def get(self, device: DeviceId) -> DeviceProgress | None:
        return self.records.get(device)

    def put(self, device: DeviceId, **fields: object) -> DeviceProgress:
        """Set ``fields`` on the device's record (created as needed); a no-op stays a no-op."""
        old = self.records.get(device)
        if old is None:
            new = msgspec.convert(
                {"rollout": self.rollout.name, "device_id": device, "updated_at": self.now}
                | fields,
                DeviceProgress,
                from_attributes=True,
            )
        else:
            new = msgspec.structs.replace(old, **fields)
            if new == old:
                return old
            new = msgspec.structs.replace(new, updated_at=self.now)
        self.records[device] = new
        self.changed[device] = new
        return new

    def in_progress(self) -> int:
        """Devices in progress, forward or undo: what max-in-flight bounds."""
        return sum(
            1
            for r in self.records.values()
            if r.state is DeviceState.IN_PROGRESS or r.undo is DeviceState.IN_PROGRESS
        )
