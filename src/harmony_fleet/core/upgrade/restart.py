"""What a fresh agent process does with the upgrade the previous process left in flight.

The restarted process may be the old version (the service restarted it after a crash) or the
new one (the old agent crashed after the swap, or handed over). It reads the persisted record
and where ``current`` points, then finishes or reverts so that exactly one agent runs, ``current``
points at the previous or a committed version, and the status ends in a terminal phase that
tells the truth (ADR-022, invariant 2).
"""

from __future__ import annotations

from dataclasses import replace

from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.outcomes import (
    NO_EFFECTS,
    Result,
    begin_staging,
    fail,
    finish,
    roll_back,
)
from harmony_fleet.core.upgrade.records import remember_finished
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import (
    MAX_ATTEMPTS,
    ErrorCode,
    UpgradeState,
)

S = UpgradeState
_NO_EFFECTS = NO_EFFECTS


def on_restarted(snap: Snapshot, event: ev.AgentRestarted) -> Result:
    """Finish or revert what the previous process left, so the status ends in the truth."""
    record = event.record
    if record is None:
        return snap, _NO_EFFECTS
    base = snap.moved(
        S.IDLE,
        marker=record.marker,
        from_version=record.from_version,
        attempt=record.attempt,
        started_at=record.started_at,
        candidate_instance_id=record.candidate_instance_id,
        error_code=record.error_code,
        error_detail=record.error_detail,
        candidate_exit_code=record.candidate_exit_code,
        candidate_log_tail=record.candidate_log_tail,
    )
    target, uid = record.target, record.upgrade_id
    was = record.state
    if was in (S.STAGING, S.VERIFYING):
        if record.attempt >= MAX_ATTEMPTS:
            staging = base.moved(S.STAGING)
            return fail(staging, ErrorCode.TOO_MANY_ATTEMPTS, f"interrupted {record.attempt}x")
        staging = base.moved(S.STAGING, attempt=record.attempt + 1)
        return staging, begin_staging(staging)
    if was in (S.COMMITTING, S.COMMITTED) and event.current_version == target:
        committed = base.moved(S.COMMITTED)
        memory = replace(base.memory, finished=remember_finished(base.memory.finished, uid))
        committed = replace(committed, memory=memory)
        if snap.running_version == target:
            # We are the new main instance: the candidate has served its purpose.
            return committed, (
                fx.StopCandidate(upgrade_id=uid),
                committed.status(),
                fx.RecordFinished(upgrade_id=uid),
                fx.PersistInFlight(record=None),
            )
        # We are the old version, restarted after the swap: hand over again.
        return committed, (
            fx.PersistInFlight(record=committed.record()),
            committed.status(),
            fx.RecordFinished(upgrade_id=uid),
            fx.HandOver(upgrade_id=uid),
        )
    if was is S.COMMITTED:
        # Committed, yet current is back at the previous version: someone reverted it.
        done = base.moved(
            S.ROLLED_BACK,
            error_code=ErrorCode.LAYOUT_INCONSISTENT,
            error_detail=f"committed, but current points at {event.current_version}",
        )
        status = done.status()
        done, book = finish(done, blame=False)
        return done, (fx.StopCandidate(upgrade_id=uid), status, *book)
    if was in (S.STARTING, S.CUTOVER_READY, S.HOLDING, S.COMMITTING, S.ROLLING_BACK):
        code = record.error_code if was is S.ROLLING_BACK and record.error_code else None
        return roll_back(
            base,
            code or ErrorCode.AGENT_RESTARTED,
            record.error_detail if code else f"agent restarted in {was.value}",
        )
    # A terminal record that was not cleared: clear it.
    return base.moved(S.IDLE), (fx.PersistInFlight(record=None),)
