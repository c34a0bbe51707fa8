"""The rollout engine: one pure function, :func:`plan`, from what is known now to what to do.

The operator calls :func:`plan` whenever something changed (a status, a heartbeat's presence,
the rollout's levers) or the returned ``wake_at`` came, then performs the :class:`Plan`: write
the changed progress records (``writes``), then the markers (``starts``), then the status. The
engine keeps no memory besides those records and the status, so a restarted operator, or a plan
replayed after a crash between two writes, decides the same: upgrade ids are derived
(:func:`.fleet.upgrade_id_for`), and a record in progress whose marker is missing gets its
marker again.

Rules (docs/rollouts.md):

* **canaries** (wave 0, :mod:`.canary`) first; any canary failure halts; once every started
  canary Succeeded the soak starts; waves start when it passed;
* **waves** of max-in-flight devices, picked in a stable order among devices that are online,
  inside their maintenance window and pass the pre-flight gates (:func:`.fleet.gate`); a wave's
  starts are spread over ``spread_s`` and at most ``max_downloads`` devices download at once;
  the next wave starts when every started device of this one is final;
* **halt** when a wave's failed share (RolledBack, Failed, heartbeat lost after commit) exceeds
  ``halt_failure_rate``; starts not yet sent are withdrawn, no device starts afterwards;
* **pending** devices (offline, outside their window) wait; at the deadline, those never
  started are skipped;
* at no moment are more than max-in-flight devices in progress, undo included (:mod:`.undo`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import msgspec

from harmony_fleet.contracts.ids import DeviceId
from harmony_fleet.contracts.rollout import (
    FAILURE_STATES,
    FINAL_STATES,
    DeviceOutcome,
    DeviceProgress,
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
)
from harmony_fleet.core.rollout import canary, dispatch, summary, undo
from harmony_fleet.core.rollout.actions import Plan
from harmony_fleet.core.rollout.fleet import (
    ALREADY_AT_VERSION,
    DEADLINE_PASSED,
    GATE_PREFIX,
    HEARTBEAT_LOST,
    OFFLINE,
    OUTSIDE_WINDOW,
    DeviceView,
    gate,
    outcome,
    rank,
    salt_of,
    selected,
)
from harmony_fleet.core.rollout.ledger import Ledger
from harmony_fleet.core.rollout.phases import ACTIVE, STARTING, TERMINAL, Trigger, move
from harmony_fleet.core.rollout.windows import TzResolver, any_open
from harmony_fleet.core.rollout.windows import zoneinfo_resolver as _default_resolver

logger = logging.getLogger(__name__)

P = RolloutPhase
S = DeviceState
MAX_HALT_REPORT = 100


def plan(
    rollout: Rollout,
    status: RolloutStatus,
    devices: Sequence[DeviceView],
    progress: Mapping[DeviceId, DeviceProgress],
    *,
    now: float,
    artifact_size: int | None = None,
    skip: Sequence[str] = (),
    resolve: TzResolver = _default_resolver,
) -> Plan:
    """Decide the next actions of ``rollout`` (pure: same inputs, same plan). ``skip`` is the
    version's skip list (device ids and ``label=value``, signed with the release)."""
    work = Ledger(rollout, progress, now)
    members = {d.device_id: d for d in devices if selected(rollout, d) or d.device_id in progress}
    width = max(1, rollout.max_in_flight.of(len(members)))
    salt = salt_of(rollout)

    _refresh(work, members)
    status = _levers(rollout, status)
    pending = _pending(work, members, artifact_size, skip, resolve)

    if status.phase is P.CANARY:
        status = _canary(work, status, members, pending, salt)
    if status.phase is P.SOAKING and status.soak_until is not None and now >= status.soak_until:
        status = move(status, Trigger.SOAK_PASSED, P.WAVES)
    if status.phase is P.WAVES:
        status = _waves(work, status, members, pending, width, salt)
    if status.phase in (P.CANARY, P.WAVES, P.PAUSED):
        status = _check_failures(work, status)
    if status.phase is P.UNDOING:
        status = undo.advance(work, status, members, width)

    if status.phase in STARTING:
        dispatch.start_assigned(work, status, members, pending, width, salt)
    else:
        dispatch.withdraw(work, members)
    starts = [*dispatch.forward_starts(work, status, members), *undo.starts(work, members)]
    states = summary.states(work, members, pending)
    status = summary.counts(status, states, undo.states(work, members), now)
    return Plan(
        status=status,
        writes=tuple(work.changed.values()),
        starts=tuple(starts),
        states=states,
        undo_states=undo.states(work, members),
        wake_at=summary.wake_at(work, status, members, pending, resolve),
    )


def _refresh(work: Ledger, members: Mapping[DeviceId, DeviceView]) -> None:
    """Turn each in-progress record's status into its outcome (a lost heartbeat after the
    commit may still be overturned by the device's own Succeeded)."""
    for record in list(work.records.values()):
        device = members.get(record.device_id)
        if device is None:
            continue
        if record.state is S.IN_PROGRESS or record.reason == HEARTBEAT_LOST:
            found = outcome(device, record.upgrade_id)
            if found is not None:
                view = device.status_of(record.upgrade_id)
                kept = view.previous_sha256 if view is not None else None
                work.put(
                    record.device_id,
                    state=found[0],
                    reason=found[1],
                    previous_sha256=kept or record.previous_sha256,
                )
        undo.refresh(work, record, device)


def _levers(rollout: Rollout, status: RolloutStatus) -> RolloutStatus:
    """Apply the person's levers: undo over abort over pause."""
    phase = status.phase
    if rollout.undo_requested:
        if phase not in (P.UNDOING, P.UNDONE):
            return move(status, Trigger.UNDO, P.UNDOING, paused_from=None)
        return status
    if rollout.aborted:
        if phase not in TERMINAL and phase is not P.UNDOING:
            return move(status, Trigger.ABORT, P.ABORTED, paused_from=None)
        return status
    if rollout.paused and phase in ACTIVE:
        return move(status, Trigger.PAUSE, P.PAUSED, paused_from=phase)
    if not rollout.paused and phase is P.PAUSED:
        back = status.paused_from or P.CANARY
        return move(status, Trigger.RESUME, back, paused_from=None)
    return status


def _pending(
    work: Ledger,
    members: Mapping[DeviceId, DeviceView],
    artifact_size: int | None,
    skip: Sequence[str],
    resolve: TzResolver,
) -> dict[DeviceId, str]:
    """Devices not started yet, with why they wait ("" when they could start now). Devices at
    the version already, failing a gate or past the deadline get their final record here."""
    rollout = work.rollout
    late = rollout.deadline is not None and work.now >= rollout.deadline
    pending: dict[DeviceId, str] = {}
    for device_id, device in members.items():
        record = work.get(device_id)
        if record is not None and (
            record.state is S.IN_PROGRESS
            or (record.state in FINAL_STATES and not record.reason.startswith(GATE_PREFIX))
        ):
            continue
        if device.agent_version == rollout.version and (record is None or record.wave is None):
            work.put(device_id, state=S.SUCCEEDED, reason=ALREADY_AT_VERSION)
            continue
        if late:
            work.put(device_id, state=S.SKIPPED, reason=DEADLINE_PASSED)
            continue
        failed_gate = gate(rollout, device, artifact_size, skip)
        if failed_gate is not None:
            work.put(device_id, state=S.SKIPPED, reason=failed_gate, wave=None)
            continue
        if record is not None and record.state is S.SKIPPED:  # the gate passes now
            work.put(device_id, state=S.PENDING, reason="")
        if not device.online:
            pending[device_id] = OFFLINE
        elif not any_open(rollout.windows, work.now, device.time_zone, resolve):
            pending[device_id] = OUTSIDE_WINDOW
        else:
            pending[device_id] = ""
    return pending


def _canary(
    work: Ledger,
    status: RolloutStatus,
    members: Mapping[DeviceId, DeviceView],
    pending: Mapping[DeviceId, str],
    salt: str,
) -> RolloutStatus:
    count = work.rollout.canary.of(len(members))
    if count == 0:  # no canary asked for: straight to the waves
        return move(status, Trigger.CANARIES_PASSED, P.SOAKING, soak_until=work.now)
    cohort = [r for r in work.records.values() if r.wave == 0]
    if not any(r.state is not S.SKIPPED for r in cohort):
        candidates = [
            members[d] for d, why in pending.items() if why != OFFLINE and _unassigned(work.get(d))
        ]
        for device_id in canary.choose(candidates, work.rollout.strata, count, salt):
            work.put(device_id, state=S.PENDING, wave=0, reason="")
        cohort = [r for r in work.records.values() if r.wave == 0]
    if any(r.state in FAILURE_STATES for r in cohort):
        return status  # _check_failures halts
    started = [r for r in cohort if r.state is not S.SKIPPED]
    if started and all(r.state is S.SUCCEEDED for r in started):
        soak_until = work.now + work.rollout.soak_s
        return move(status, Trigger.CANARIES_PASSED, P.SOAKING, soak_until=soak_until)
    if not started and not pending and not _any_in_progress(work):
        return move(status, Trigger.ALL_SETTLED, P.DONE)
    return status


def _waves(
    work: Ledger,
    status: RolloutStatus,
    members: Mapping[DeviceId, DeviceView],
    pending: Mapping[DeviceId, str],
    width: int,
    salt: str,
) -> RolloutStatus:
    wave = [r for r in work.records.values() if r.wave == status.wave]
    if status.wave > 0 and _over_threshold(work.rollout, wave):
        return status  # _check_failures halts
    if any(r.state is S.IN_PROGRESS for r in wave):
        return status
    for record in wave:  # assigned but never started (offline since): back to the pool
        if record.state is S.PENDING:
            work.put(record.device_id, wave=None)
    ready = sorted(
        (d for d, why in pending.items() if not why),
        key=lambda d: (rank(salt, d), d),
    )[:width]
    if ready:
        for device_id in ready:
            work.put(device_id, state=S.PENDING, reason="", wave=status.wave + 1)
        return msgspec.structs.replace(status, wave=status.wave + 1, wave_started_at=work.now)
    if not pending and not _any_in_progress(work):
        return move(status, Trigger.ALL_SETTLED, P.DONE)
    return status


def _over_threshold(rollout: Rollout, wave: Sequence[DeviceProgress]) -> bool:
    failed = sum(1 for r in wave if r.state in FAILURE_STATES)
    return bool(wave) and failed * 100.0 > rollout.halt_failure_rate * len(wave)


def _check_failures(work: Ledger, status: RolloutStatus) -> RolloutStatus:
    """Halt when the wave in hand failed too much (the canary cohort: at all)."""
    wave_no = status.wave
    wave = [r for r in work.records.values() if r.wave == wave_no]
    failures = [r for r in wave if r.state in FAILURE_STATES]
    if not failures:
        return status
    if wave_no > 0 and not _over_threshold(work.rollout, wave):
        return status
    where = "canary" if wave_no == 0 else f"wave {wave_no}"
    reason = (
        f"{where}: {len(failures)} of {len(wave)} devices failed"
        f" (threshold {work.rollout.halt_failure_rate:g}%"
        f"{', any canary failure halts' if wave_no == 0 else ''})"
    )
    report = [
        DeviceOutcome(device_id=r.device_id, state=r.state, reason=r.reason)
        for r in sorted(failures, key=lambda r: r.device_id)[:MAX_HALT_REPORT]
    ]
    logger.warning("rollout %s halted: %s", work.rollout.name, reason)
    return move(
        status,
        Trigger.FAILURE_RATE_CROSSED,
        P.HALTED,
        halted_at=work.now,
        halt_reason=reason,
        halted_devices=report,
        paused_from=None,
    )


def _unassigned(record: DeviceProgress | None) -> bool:
    return record is None or record.wave is None


def _any_in_progress(work: Ledger) -> bool:
    return any(r.state is S.IN_PROGRESS for r in work.records.values())
