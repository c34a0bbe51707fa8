"""What a fresh agent process does with the upgrade the previous process left in flight.

The restarted process may be the old version (the service restarted it after a crash) or the
new one (the old agent crashed after the swap, or handed over). It reads the persisted record
and where ``current`` points, then finishes or reverts so that exactly one agent runs, ``current``
points at the previous or a committed version, and the status ends in a terminal phase that
tells the truth (ADR-022, invariant 2).

After a commit the record also carries the post-commit watch: the new main resumes it
(``Watching`` for what is left of the window, then ``Succeeded``), and the previous version,
started again because its launcher rolled the new one back inside the window, finds the
launcher's rollback note and reports ``RolledBack`` (``post_commit``) with the new version's exit
codes and last log lines.
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
    succeed,
)
from harmony_fleet.core.upgrade.records import remember_finished
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import (
    BLAMES_VERSION,
    CANDIDATE_STATES,
    COMMITTED_STATES,
    MAX_ATTEMPTS,
    WATCH_SETTLE_S,
    ErrorCode,
    TimerKind,
    UpgradeState,
)
from harmony_fleet.core.upgrade.watch import RollbackNote, remaining, stable_for

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
        committed_at=record.committed_at,
    )
    target, uid, was = record.target, record.upgrade_id, record.state
    if was in (S.FAILED, S.ROLLED_BACK):
        # Ended: re-assert the terminal status (idempotent), never resume.
        stop: tuple[fx.Effect, ...] = ()
        if was is S.ROLLED_BACK:
            stop = (fx.StopCandidate(upgrade_id=uid), fx.EndWatch(upgrade_id=uid))
        done, book = finish(base.moved(was), blame=record.error_code in BLAMES_VERSION)
        return done, (*stop, *book)
    if was is S.SUCCEEDED:
        return succeed(base)  # re-asserted; collecting garbage again is harmless
    note = event.post_commit
    if (
        was in COMMITTED_STATES
        and note is not None
        and note.upgrade_id == uid
        and event.current_version != target
    ):
        return _rolled_back_after_commit(base, note)
    if was in COMMITTED_STATES and event.current_version == target:
        committed = base.moved(S.COMMITTED)
        memory = replace(base.memory, finished=remember_finished(base.memory.finished, uid))
        committed = replace(committed, memory=memory)
        if snap.running_version == target:
            return _new_main(committed, event.since_commit_s)
        # We are the old version, restarted after the swap: hand over again.
        common = (
            fx.PersistInFlight(record=committed.record()),
            fx.RecordFinished(upgrade_id=uid),
            committed.status(),
        )
        return committed, (*common, fx.HandOver(upgrade_id=uid))
    if was in (S.COMMITTED, S.WATCHING):
        # Committed, yet current is back at the previous version and no launcher says why:
        # someone reverted it by hand.
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


def _new_main(committed: Snapshot, since_commit_s: float | None) -> Result:
    """We are the new main instance after the swap: stop the candidate, then watch or succeed.

    The record stays (in Watching) until the watch ends, so that a restart inside it, of this
    version or of the previous one after a launcher rollback, knows where it is. The watch ends
    when the window has passed *and* this process has been up for :func:`stable_for` of it: a
    restart after the window (a crash loop slower than the window) must prove a steady run too.
    """
    uid = committed.upgrade_id
    assert uid is not None
    stop = fx.StopCandidate(upgrade_id=uid)
    window = committed.watch_window_s
    if window <= 0:
        done, effects = succeed(committed)
        return done, (stop, *effects)
    left = max(remaining(window, since_commit_s), stable_for(window))
    watching = committed.moved(S.WATCHING)
    return watching, (
        stop,
        fx.RecordFinished(upgrade_id=uid),
        fx.PersistInFlight(record=watching.record()),
        watching.status(),
        fx.ScheduleTimer(kind=TimerKind.WATCH, delay_s=left + WATCH_SETTLE_S, upgrade_id=uid),
    )


def _rolled_back_after_commit(base: Snapshot, note: RollbackNote) -> Result:
    """The launcher returned the device to us inside the watch window: tell why, blame it."""
    uid = note.upgrade_id
    done = base.moved(
        S.ROLLED_BACK,
        error_code=ErrorCode.POST_COMMIT,
        error_detail=f"{note.reason.value}: {note.detail}",
        candidate_exit_code=note.exit_code,
        candidate_log_tail=note.log_tail,
    )
    done, book = finish(done, blame=True)
    return done, (fx.StopCandidate(upgrade_id=uid), *book, fx.EndWatch(upgrade_id=uid))
