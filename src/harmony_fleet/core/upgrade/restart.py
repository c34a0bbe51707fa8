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
    BLAMES_VERSION,
    CANDIDATE_STATES,
    MAX_ATTEMPTS,
    ErrorCode,
    UpgradeState,
)

S = UpgradeState


def on_restarted(snap: Snapshot, event: ev.AgentRestarted) -> Result:
    """Finish or revert what the previous process left, so the status ends in the truth."""
    record = event.record
    if record is None or snap.marker is not None:
        # Nothing was recorded, or this is not a fresh process (a restart is its first event).
        return snap, NO_EFFECTS
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
    target, uid, was = record.target, record.upgrade_id, record.state
    if was in (S.FAILED, S.ROLLED_BACK):
        # Ended: re-assert the terminal status (idempotent), never resume.
        stop = (fx.StopCandidate(upgrade_id=uid),) if was is S.ROLLED_BACK else ()
        done, book = finish(base.moved(was), blame=record.error_code in BLAMES_VERSION)
        return done, (*stop, *book)
    if was in (S.COMMITTING, S.COMMITTED) and event.current_version == target:
        committed = base.moved(S.COMMITTED)
        memory = replace(base.memory, finished=remember_finished(base.memory.finished, uid))
        committed = replace(committed, memory=memory)
        if snap.running_version == target:
            # We are the new main instance: the candidate has served its purpose. The record is
            # cleared so that later restarts never rewrite Committed over a Succeeded.
            return committed, (
                fx.StopCandidate(upgrade_id=uid),
                fx.RecordFinished(upgrade_id=uid),
                committed.status(),
                fx.PersistInFlight(record=None),
            )
        # We are the old version, restarted after the swap: hand over again.
        common = (
            fx.PersistInFlight(record=committed.record()),
            fx.RecordFinished(upgrade_id=uid),
            committed.status(),
        )
        return committed, (*common, fx.HandOver(upgrade_id=uid))
    if was is S.COMMITTED:
        # Committed, yet current is back at the previous version: someone reverted it.
        done = base.moved(
            S.ROLLED_BACK,
            error_code=ErrorCode.LAYOUT_INCONSISTENT,
            error_detail=f"committed, but current points at {event.current_version}",
        )
        done, book = finish(done, blame=False)
        return done, (fx.StopCandidate(upgrade_id=uid), *book)
    if uid in snap.memory.finished:
        # Recorded as finished, yet the record never reached a terminal state: never rerun it.
        done = base.moved(
            S.FAILED,
            error_code=ErrorCode.AGENT_RESTARTED,
            error_detail=f"agent restarted in {was.value}",
        )
        stop = (fx.StopCandidate(upgrade_id=uid),) if was in CANDIDATE_STATES else ()
        done, book = finish(done, blame=False)
        return done, (*stop, *book)
    if was in (S.STAGING, S.VERIFYING):
        if record.attempt >= MAX_ATTEMPTS:
            return fail(
                base.moved(S.STAGING),
                ErrorCode.TOO_MANY_ATTEMPTS,
                f"interrupted {record.attempt} times",
            )
        staging = base.moved(S.STAGING, attempt=record.attempt + 1)
        return staging, begin_staging(staging)
    # A candidate may exist (Starting .. Committing before the swap, RollingBack): revert.
    code = record.error_code if was is S.ROLLING_BACK and record.error_code else None
    return roll_back(
        base,
        code or ErrorCode.AGENT_RESTARTED,
        record.error_detail if code else f"agent restarted in {was.value}",
    )
