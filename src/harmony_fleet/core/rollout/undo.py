"""Undo: return every device this rollout upgraded to the version it ran before.

A device is undone when the rollout started it (its record has a wave), it ended on the new
version (Succeeded, or silent after its commit), and it still runs that version. The marker asks
for the kept version with source ``installed`` (the existing rollback path: nothing is
downloaded) and the hash the device reported when it installed it. Devices still upgrading are
waited for; offline ones stay pending until they come back; at most max-in-flight devices are
in progress at once, counting the forward upgrades still finishing. Undo does not halt: each
device's result is reported on its own (``DeviceProgress.undo``).
"""

from __future__ import annotations

from collections.abc import Mapping

from harmony_fleet.contracts.ids import DeviceId, Version
from harmony_fleet.contracts.rollout import (
    DeviceProgress,
    DeviceState,
    RolloutPhase,
    RolloutStatus,
)
from harmony_fleet.contracts.upgrade import AgentUpgradePhase
from harmony_fleet.core.rollout.actions import Start
from harmony_fleet.core.rollout.fleet import (
    HEARTBEAT_LOST,
    MOVED_ON,
    NO_PREVIOUS,
    OFFLINE,
    SUPERSEDED,
    DeviceView,
    rank,
    salt_of,
    upgrade_id_for,
)
from harmony_fleet.core.rollout.ledger import Ledger
from harmony_fleet.core.rollout.phases import Trigger, move

S = DeviceState
AT_PREVIOUS = "already_at_previous_version"
_OPEN = (None, S.PENDING, S.IN_PROGRESS)


def is_candidate(ledger: Ledger, record: DeviceProgress) -> bool:
    """The rollout upgraded this device (or may have: silent after the commit)."""
    return (
        record.wave is not None
        and record.previous_version is not None
        and record.previous_version != ledger.rollout.version
        and (record.state is S.SUCCEEDED or record.reason == HEARTBEAT_LOST)
    )


def refresh(ledger: Ledger, record: DeviceProgress, device: DeviceView) -> None:
    """Turn an undo in progress into its outcome when the device reported it."""
    if record.undo is not S.IN_PROGRESS:
        return
    view = device.status_of(record.undo_upgrade_id)
    if view is None:
        return
    if view.phase is AgentUpgradePhase.SUCCEEDED:
        ledger.put(record.device_id, undo=S.SUCCEEDED, undo_reason="")
    elif view.phase in (AgentUpgradePhase.ROLLED_BACK, AgentUpgradePhase.FAILED):
        ledger.put(record.device_id, undo=S.FAILED, undo_reason=view.error_code or "failed")
    elif view.phase is AgentUpgradePhase.SUPERSEDED:
        ledger.put(record.device_id, undo=S.SKIPPED, undo_reason=SUPERSEDED)


def advance(
    ledger: Ledger, status: RolloutStatus, members: Mapping[DeviceId, DeviceView], width: int
) -> RolloutStatus:
    """Start the next undos within max-in-flight; Undone when nothing is left to undo."""
    room = width - ledger.in_progress()
    salt = salt_of(ledger.rollout)
    todo = sorted(
        (r for r in ledger.records.values() if is_candidate(ledger, r) and r.undo in _OPEN),
        key=lambda r: (rank(salt, r.device_id), r.device_id),
    )
    for record in todo:
        if record.undo is S.IN_PROGRESS:
            continue
        device = members.get(record.device_id)
        if device is None or not device.online:
            ledger.put(record.device_id, undo=S.PENDING, undo_reason=OFFLINE)
        elif device.agent_version == record.previous_version:
            ledger.put(record.device_id, undo=S.SUCCEEDED, undo_reason=AT_PREVIOUS)
        elif device.agent_version != ledger.rollout.version:
            ledger.put(record.device_id, undo=S.SKIPPED, undo_reason=MOVED_ON)
        elif record.previous_sha256 is None:
            ledger.put(record.device_id, undo=S.SKIPPED, undo_reason=NO_PREVIOUS)
        elif room > 0:
            ledger.put(
                record.device_id,
                undo=S.IN_PROGRESS,
                undo_reason="",
                undo_upgrade_id=upgrade_id_for(ledger.rollout, record.device_id, undo=True),
            )
            room -= 1
        else:
            ledger.put(record.device_id, undo=S.PENDING, undo_reason="")
    forward_busy = any(r.state is S.IN_PROGRESS for r in ledger.records.values())
    left = any(is_candidate(ledger, r) and r.undo in _OPEN for r in ledger.records.values())
    if not forward_busy and not left and status.phase is RolloutPhase.UNDOING:
        return move(status, Trigger.UNDO_SETTLED, RolloutPhase.UNDONE)
    return status


def starts(ledger: Ledger, members: Mapping[DeviceId, DeviceView]) -> list[Start]:
    """Undo markers not written yet."""
    found = []
    for record in ledger.records.values():
        if record.undo is not S.IN_PROGRESS:
            continue
        device = members.get(record.device_id)
        if device is not None and device.marker_written(record.undo_upgrade_id):
            continue
        assert record.undo_upgrade_id is not None and record.previous_version is not None
        found.append(
            Start(
                device_id=record.device_id,
                upgrade_id=record.undo_upgrade_id,
                target_version=Version(record.previous_version),
                wave=record.wave or 0,
                undo=True,
                sha256=record.previous_sha256,
            )
        )
    return sorted(found, key=lambda s: s.device_id)


def states(
    ledger: Ledger, members: Mapping[DeviceId, DeviceView]
) -> dict[DeviceId, tuple[DeviceState, str]]:
    """Each device an undo concerns, with its undo state and why."""
    del members
    return {
        r.device_id: (r.undo or S.PENDING, r.undo_reason)
        for r in ledger.records.values()
        if r.undo is not None or is_candidate(ledger, r)
    }
