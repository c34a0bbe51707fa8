"""Starting devices: the current wave's assigned devices within max-in-flight, their markers
when their share of the spread has passed and within the bound on concurrent downloads, and the
withdrawal of starts not yet sent when the rollout leaves its starting phases."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harmony_fleet.contracts.ids import DeviceId, Version
from harmony_fleet.contracts.rollout import DeviceProgress, DeviceState, RolloutStatus
from harmony_fleet.core.rollout.actions import Start
from harmony_fleet.core.rollout.fleet import (
    DOWNLOADING,
    OFFLINE,
    WITHDRAWN,
    DeviceView,
    rank,
    upgrade_id_for,
)
from harmony_fleet.core.rollout.ledger import Ledger
from harmony_fleet.core.rollout.phases import STARTING

S = DeviceState


def start_assigned(
    work: Ledger,
    status: RolloutStatus,
    members: Mapping[DeviceId, DeviceView],
    pending: Mapping[DeviceId, str],
    width: int,
    salt: str,
) -> None:
    """Start the current wave's assigned devices that can start now, within max-in-flight; each
    start waits its share of the spread (``not_before``)."""
    room = width - work.in_progress()
    assigned = sorted(
        (r for r in work.records.values() if r.wave == status.wave and r.state is S.PENDING),
        key=lambda r: (rank(salt, r.device_id), r.device_id),
    )
    for record in assigned:
        if room <= 0:
            break
        if pending.get(record.device_id, OFFLINE):
            continue
        device = members[record.device_id]
        work.put(
            record.device_id,
            state=S.IN_PROGRESS,
            reason="",
            upgrade_id=upgrade_id_for(work.rollout, record.device_id),
            previous_version=device.agent_version,
            not_before=work.now + work.rollout.spread_s * rank(salt, record.device_id),
        )
        room -= 1


def unsent(work: Ledger, members: Mapping[DeviceId, DeviceView]) -> Iterable[DeviceProgress]:
    """Records in progress whose marker was never written."""
    for record in work.records.values():
        device = members.get(record.device_id)
        if record.state is S.IN_PROGRESS and not (
            device is not None and device.marker_written(record.upgrade_id)
        ):
            yield record


def withdraw(work: Ledger, members: Mapping[DeviceId, DeviceView]) -> None:
    """Out of the starting phases (halt, pause, abort, undo): starts not yet sent are taken
    back, so no device starts after a halt."""
    for record in list(unsent(work, members)):
        work.put(
            record.device_id,
            state=S.PENDING,
            reason=WITHDRAWN,
            upgrade_id=None,
            previous_version=None,
            not_before=None,
        )


def forward_starts(
    work: Ledger, status: RolloutStatus, members: Mapping[DeviceId, DeviceView]
) -> list[Start]:
    """Markers due now, within the bound on concurrent downloads."""
    if status.phase not in STARTING:
        return []
    bound = work.rollout.max_downloads
    downloading = 0
    for record in work.records.values():
        device = members.get(record.device_id)
        if record.state is S.IN_PROGRESS and device is not None:
            view = device.status_of(record.upgrade_id)
            if device.marker_written(record.upgrade_id) and (
                view is None or view.phase in DOWNLOADING
            ):
                downloading += 1
    due = sorted(
        (r for r in unsent(work, members) if (r.not_before or 0.0) <= work.now),
        key=lambda r: (r.not_before or 0.0, r.device_id),
    )
    starts = []
    for record in due:
        if bound is not None and downloading >= bound:
            break
        assert record.upgrade_id is not None and record.wave is not None
        starts.append(
            Start(
                device_id=record.device_id,
                upgrade_id=record.upgrade_id,
                target_version=Version(work.rollout.version),
                wave=record.wave,
            )
        )
        downloading += 1
    return starts
