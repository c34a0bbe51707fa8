"""What a plan reports: every device's state and why, the counts, and when to plan again."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from harmony_fleet.contracts.ids import DeviceId
from harmony_fleet.contracts.rollout import DeviceState, RolloutPhase, RolloutStatus
from harmony_fleet.core.rollout import dispatch
from harmony_fleet.core.rollout.fleet import OUTSIDE_WINDOW, DeviceView
from harmony_fleet.core.rollout.ledger import Ledger
from harmony_fleet.core.rollout.phases import STARTING, TERMINAL
from harmony_fleet.core.rollout.windows import TzResolver, first_opening

P = RolloutPhase
S = DeviceState


def states(
    work: Ledger, members: Mapping[DeviceId, DeviceView], pending: Mapping[DeviceId, str]
) -> dict[DeviceId, tuple[DeviceState, str]]:
    states: dict[DeviceId, tuple[DeviceState, str]] = {}
    for device_id in members:
        record = work.get(device_id)
        if record is not None and record.state is not S.PENDING:
            states[device_id] = (record.state, record.reason)
        else:
            why = pending.get(device_id) or (record.reason if record is not None else "")
            states[device_id] = (S.PENDING, why)
    return states


def counts(
    status: RolloutStatus,
    states: Mapping[DeviceId, tuple[DeviceState, str]],
    undo_states: Mapping[DeviceId, tuple[DeviceState, str]],
    now: float,
) -> RolloutStatus:
    counts: dict[DeviceState, int] = {}
    for state, _ in states.values():
        counts[state] = counts.get(state, 0) + 1
    undo_counts: dict[DeviceState, int] = {}
    for state, _ in undo_states.values():
        undo_counts[state] = undo_counts.get(state, 0) + 1
    if counts == status.counts and undo_counts == status.undo_counts and status.updated_at:
        return status
    return msgspec.structs.replace(status, counts=counts, undo_counts=undo_counts, updated_at=now)


def wake_at(
    work: Ledger,
    status: RolloutStatus,
    members: Mapping[DeviceId, DeviceView],
    pending: Mapping[DeviceId, str],
    resolve: TzResolver,
) -> float | None:
    """The next time something changes by time alone: a spread start, the soak's end, a window
    opening for a waiting device, the deadline."""
    times: list[float] = []
    now = work.now
    if status.phase in STARTING:
        times.extend(
            r.not_before
            for r in dispatch.unsent(work, members)
            if r.not_before and r.not_before > now
        )
        zones = {members[d].time_zone for d, why in pending.items() if why == OUTSIDE_WINDOW}
        times.extend(first_opening(work.rollout.windows, now, z, resolve) for z in zones)
    if status.phase is P.SOAKING and status.soak_until is not None:
        times.append(status.soak_until)
    deadline = work.rollout.deadline
    if pending and deadline is not None and deadline > now and status.phase not in TERMINAL:
        times.append(deadline)
    return min(times) if times else None
