"""The transition handlers of the agent-side machine: pure functions ``(snapshot, event)``.

Each handler returns the next snapshot and the effects to perform, in order. Which handler runs
for which (state, event) pair, and which states it may lead to, is declared in
:data:`machine.TABLE`; a handler never needs to check that it was called in a sensible state,
only the facts that table rows cannot express (does this heartbeat belong to our candidate? is
this the armed upgrade id?).
"""

from __future__ import annotations

from dataclasses import replace

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.acceptance import Verdict, judge, judge_at_rest
from harmony_fleet.core.upgrade.records import Memory, remember_finished
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import (
    ARMED_STATES,
    BLAMES_VERSION,
    MAX_ATTEMPTS,
    SELF_TEST_GRACE_S,
    ErrorCode,
    TimerKind,
    UpgradeState,
)

S = UpgradeState
Result = tuple[Snapshot, tuple[fx.Effect, ...]]
_NO_EFFECTS: tuple[fx.Effect, ...] = ()


def ignore(snap: Snapshot, event: object) -> Result:
    """A late or duplicate event: nothing changes."""
    return snap, _NO_EFFECTS


# --- helpers -------------------------------------------------------------------------------


def _uid(snap: Snapshot) -> UpgradeId:
    assert snap.upgrade_id is not None
    return snap.upgrade_id


def _target(snap: Snapshot) -> Version:
    assert snap.target is not None
    return snap.target


def _finish(snap: Snapshot, *, blame: bool) -> tuple[Snapshot, tuple[fx.Effect, ...]]:
    """Book-keeping of an upgrade that ended: memory, skip list, record cleared."""
    uid, target = _uid(snap), _target(snap)
    failed = snap.memory.failed_versions
    out: list[fx.Effect] = []
    if blame:
        failed = failed | {target}
        out.append(fx.RememberFailedVersion(version=target))
    out += [fx.RecordFinished(upgrade_id=uid), fx.PersistInFlight(record=None)]
    memory = Memory(finished=remember_finished(snap.memory.finished, uid), failed_versions=failed)
    return replace(snap, memory=memory), tuple(out)


def _start(snap: Snapshot, seen: ev.MarkerSeen) -> Result:
    """Judge ``seen`` at rest and begin it (or end it at once)."""
    verdict = judge_at_rest(snap, seen.marker)
    fresh = snap.moved(
        snap.state,
        marker=seen.marker,
        from_version=snap.running_version,
        attempt=1,
        started_at=seen.seen_at,
        progress=None,
        candidate_instance_id=None,
        error_code=None,
        error_detail="",
        candidate_exit_code=None,
        candidate_log_tail=(),
        pending=None,
        stop_commands=(),
    )
    if verdict is Verdict.ALREADY_RUNNING:
        done = fresh.moved(S.IDLE, error_code=ErrorCode.ALREADY_RUNNING)
        status = done.status(AgentUpgradePhase.SUCCEEDED)
        done, book = _finish(done, blame=False)
        return done, (status, *book)
    if verdict is Verdict.REFUSE_FAILED_BEFORE:
        done = fresh.moved(
            S.FAILED,
            error_code=ErrorCode.VERSION_FAILED_BEFORE,
            error_detail=f"{seen.marker.target_version} failed on this device before; "
            "set force to retry it",
        )
        status = done.status()
        done, book = _finish(done, blame=False)
        return done, (status, *book)
    staging = fresh.moved(S.STAGING)
    return staging, _begin_staging(staging)


def _begin_staging(snap: Snapshot) -> tuple[fx.Effect, ...]:
    assert snap.marker is not None
    return (
        fx.PersistInFlight(record=snap.record()),
        snap.status(),
        fx.ScheduleTimer(
            kind=TimerKind.STAGING, delay_s=snap.marker.timeouts.download_s, upgrade_id=_uid(snap)
        ),
        fx.Stage(marker=snap.marker),
    )


def _then_pending(snap: Snapshot, effects: tuple[fx.Effect, ...]) -> Result:
    """After an upgrade ended: hand the waiting marker back to be judged at rest, if any."""
    if snap.pending is None:
        return snap, effects
    return replace(snap, pending=None), (*effects, fx.Resubmit(event=snap.pending))


def _fail(
    snap: Snapshot,
    code: ErrorCode,
    detail: str = "",
    *,
    cancel_work: bool = False,
    exit_code: int | None = None,
    log_tail: tuple[str, ...] = (),
) -> Result:
    """End a pre-candidate upgrade as Failed: only the staging folder is cleaned up."""
    failed = snap.moved(
        S.FAILED,
        error_code=code,
        error_detail=detail,
        candidate_exit_code=exit_code,
        candidate_log_tail=log_tail,
    )
    out: list[fx.Effect] = []
    if cancel_work:
        out.append(fx.CancelWork())
    out += [
        fx.CancelTimer(kind=TimerKind.STAGING),
        fx.CancelTimer(kind=TimerKind.SELF_TEST),
        fx.CleanupStaging(version=_target(snap)),
        failed.status(),
    ]
    failed, book = _finish(failed, blame=code in BLAMES_VERSION)
    return _then_pending(failed, (*out, *book))


def _roll_back(
    snap: Snapshot,
    code: ErrorCode,
    detail: str = "",
    *,
    exit_code: int | None = None,
    log_tail: tuple[str, ...] = (),
    extra: tuple[fx.Effect, ...] = (),
) -> Result:
    """Begin the revert of an upgrade whose candidate may exist."""
    rolling = snap.moved(
        S.ROLLING_BACK,
        error_code=code,
        error_detail=detail,
        candidate_exit_code=exit_code if exit_code is not None else snap.candidate_exit_code,
        candidate_log_tail=log_tail or snap.candidate_log_tail,
        stop_commands=(),
    )
    out: list[fx.Effect] = []
    if snap.state in ARMED_STATES:
        out.append(fx.DisarmStop())
    out += [
        fx.CancelTimer(kind=TimerKind.CUTOVER),
        fx.CancelTimer(kind=TimerKind.HOLD),
        *extra,
        fx.PersistInFlight(record=rolling.record()),
        fx.Revert(
            upgrade_id=_uid(snap),
            previous=snap.from_version or snap.running_version,
            target=_target(snap),
        ),
    ]
    return rolling, tuple(out)


# --- markers -------------------------------------------------------------------------------


def on_marker(snap: Snapshot, event: ev.MarkerSeen) -> Result:
    verdict = judge(snap, event.marker)
    if verdict in (Verdict.REPLAY, Verdict.DUPLICATE, Verdict.HANDING_OVER):
        return snap, _NO_EFFECTS
    if verdict is Verdict.DEFER:
        if snap.pending is not None and snap.pending.marker == event.marker:
            return snap, _NO_EFFECTS
        waiting = replace(snap, pending=event)
        return waiting, (waiting.status(),)
    if verdict is Verdict.SUPERSEDE:
        waiting = replace(snap, pending=event)
        return _fail(waiting, ErrorCode.SUPERSEDED, "a newer marker arrived", cancel_work=True)
    return _start(snap, event)


# --- staging and verification --------------------------------------------------------------


def on_staging_progress(snap: Snapshot, event: ev.StagingProgress) -> Result:
    if not snap.belongs(event.upgrade_id) or event.progress == snap.progress:
        return snap, _NO_EFFECTS
    nxt = replace(snap, progress=event.progress)
    return nxt, (nxt.status(),)


def on_staging_done(snap: Snapshot, event: ev.StagingDone) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    assert snap.marker is not None
    verifying = snap.moved(S.VERIFYING)
    timeout = snap.marker.timeouts.self_test_s
    return verifying, (
        fx.CancelTimer(kind=TimerKind.STAGING),
        verifying.status(),
        fx.ScheduleTimer(
            kind=TimerKind.SELF_TEST, delay_s=timeout + SELF_TEST_GRACE_S, upgrade_id=_uid(snap)
        ),
        fx.RunSelfTest(marker=snap.marker, timeout_s=timeout),
    )


def on_staging_failed(snap: Snapshot, event: ev.StagingFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _fail(snap, event.code, event.detail)


def on_staging_timeout(snap: Snapshot, event: ev.StagingTimedOut) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _fail(snap, ErrorCode.STAGING_TIMEOUT, "staging deadline passed", cancel_work=True)


def on_self_test_passed(snap: Snapshot, event: ev.SelfTestPassed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    assert snap.marker is not None
    starting = snap.moved(S.STARTING)
    return starting, (
        fx.CancelTimer(kind=TimerKind.SELF_TEST),
        fx.PersistInFlight(record=starting.record()),
        fx.StartCandidate(marker=snap.marker),
    )


def on_self_test_failed(snap: Snapshot, event: ev.SelfTestFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _fail(
        snap,
        ErrorCode.SELF_TEST_FAILED,
        event.detail,
        exit_code=event.exit_code,
        log_tail=event.log_tail,
    )


def on_self_test_timeout(snap: Snapshot, event: ev.SelfTestTimedOut) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _fail(snap, ErrorCode.SELF_TEST_TIMEOUT, "self-test did not finish", cancel_work=True)


# --- cutover -------------------------------------------------------------------------------


def on_candidate_started(snap: Snapshot, event: ev.CandidateStarted) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    assert snap.marker is not None
    uid, timeouts = _uid(snap), snap.marker.timeouts
    if snap.candidate_instance_id is not None:
        holding = snap.moved(S.HOLDING)
        timer = fx.ScheduleTimer(kind=TimerKind.HOLD, delay_s=timeouts.hold_s, upgrade_id=uid)
        return holding, (fx.ArmStop(upgrade_id=uid), holding.status(), timer)
    ready = snap.moved(S.CUTOVER_READY)
    timer = fx.ScheduleTimer(kind=TimerKind.CUTOVER, delay_s=timeouts.cutover_s, upgrade_id=uid)
    return ready, (fx.ArmStop(upgrade_id=uid), ready.status(), timer)


def on_candidate_start_failed(snap: Snapshot, event: ev.CandidateStartFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _roll_back(snap, ErrorCode.CANDIDATE_START_FAILED, event.detail)


def _is_our_candidate(snap: Snapshot, event: ev.CandidateHeartbeatSeen) -> bool:
    return (
        event.instance_id != snap.instance_id
        and event.version == snap.target
        and (event.upgrade_id is None or snap.belongs(event.upgrade_id))
    )


def on_candidate_heartbeat(snap: Snapshot, event: ev.CandidateHeartbeatSeen) -> Result:
    if not _is_our_candidate(snap, event):
        return snap, _NO_EFFECTS
    if snap.state is not S.CUTOVER_READY:
        if snap.candidate_instance_id is not None:
            return snap, _NO_EFFECTS
        return replace(snap, candidate_instance_id=event.instance_id), _NO_EFFECTS
    assert snap.marker is not None
    holding = snap.moved(S.HOLDING, candidate_instance_id=event.instance_id)
    return holding, (
        fx.CancelTimer(kind=TimerKind.CUTOVER),
        fx.ScheduleTimer(
            kind=TimerKind.HOLD, delay_s=snap.marker.timeouts.hold_s, upgrade_id=_uid(snap)
        ),
        holding.status(),
    )


def on_candidate_exited(snap: Snapshot, event: ev.CandidateExited) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    if snap.state is S.COMMITTING:
        # The swap is under way on the operator's word; the exit is kept for the status.
        return replace(
            snap, candidate_exit_code=event.exit_code, candidate_log_tail=event.log_tail
        ), _NO_EFFECTS
    return _roll_back(
        snap,
        ErrorCode.CANDIDATE_EXITED,
        f"candidate exited with code {event.exit_code}",
        exit_code=event.exit_code,
        log_tail=event.log_tail,
    )


def on_cutover_timeout(snap: Snapshot, event: ev.CutoverTimeout) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _roll_back(
        snap, ErrorCode.CUTOVER_TIMEOUT, "no stop and no candidate heartbeat before the deadline"
    )


def on_hold_timeout(snap: Snapshot, event: ev.HoldTimeout) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return _roll_back(
        snap, ErrorCode.HOLD_TIMEOUT, "candidate heartbeats seen, but no stop before the deadline"
    )


# --- the stop and the commit ---------------------------------------------------------------


def _reply(event: ev.StopReceived, code: ReplyCode, message: str) -> fx.ReplyToStop:
    return fx.ReplyToStop(command_id=event.command_id, code=code, message=message)


def on_stop(snap: Snapshot, event: ev.StopReceived) -> Result:
    armed = snap.armed_for
    if armed is not None and event.upgrade_id == armed:
        committing = snap.moved(S.COMMITTING, stop_commands=(event.command_id,))
        return committing, (
            fx.DisarmStop(),
            fx.CancelTimer(kind=TimerKind.CUTOVER),
            fx.CancelTimer(kind=TimerKind.HOLD),
            fx.PersistInFlight(record=committing.record()),
            fx.SwapCurrent(upgrade_id=armed, version=_target(snap)),
        )
    if armed is not None:
        return snap, (_reply(event, ReplyCode.WRONG_UPGRADE, f"armed for {armed}"),)
    if snap.state is S.COMMITTING and snap.belongs(event.upgrade_id):
        if event.command_id in snap.stop_commands:
            return snap, _NO_EFFECTS
        return replace(snap, stop_commands=(*snap.stop_commands, event.command_id)), _NO_EFFECTS
    if snap.state is S.COMMITTED and snap.belongs(event.upgrade_id):
        return snap, (_reply(event, ReplyCode.OK, "already committed"),)
    return snap, (_reply(event, ReplyCode.NOT_ARMED, f"not armed ({snap.state.value})"),)


def on_commit_done(snap: Snapshot, event: ev.CommitDone) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    committed = snap.moved(S.COMMITTED, stop_commands=())
    uid = _uid(snap)
    memory = replace(committed.memory, finished=remember_finished(committed.memory.finished, uid))
    committed = replace(committed, memory=memory)
    replies = tuple(
        fx.ReplyToStop(command_id=c, code=ReplyCode.OK, message="committed")
        for c in snap.stop_commands
    )
    return committed, (
        fx.PersistInFlight(record=committed.record()),
        committed.status(),
        fx.RecordFinished(upgrade_id=uid),
        *replies,
        fx.HandOver(upgrade_id=uid),
    )


def on_commit_failed(snap: Snapshot, event: ev.CommitFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    replies = tuple(
        fx.ReplyToStop(command_id=c, code=ReplyCode.ERROR, message=f"commit failed: {event.detail}")
        for c in snap.stop_commands
    )
    return _roll_back(snap, ErrorCode.COMMIT_FAILED, event.detail, extra=replies)


# --- the revert ----------------------------------------------------------------------------


def on_revert_done(snap: Snapshot, event: ev.RevertDone) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    done = snap.moved(S.ROLLED_BACK)
    status = done.status()
    done, book = _finish(done, blame=snap.error_code in BLAMES_VERSION)
    return _then_pending(done, (status, *book))


def on_revert_failed(snap: Snapshot, event: ev.RevertFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    reason = snap.error_code.value if snap.error_code else "rollback"
    done = snap.moved(
        S.FAILED,
        error_code=ErrorCode.REVERT_FAILED,
        error_detail=f"{reason}, then the revert failed: {event.detail}",
    )
    status = done.status()
    done, book = _finish(done, blame=snap.error_code in BLAMES_VERSION)
    return _then_pending(done, (status, *book))


# --- a fresh process -----------------------------------------------------------------------


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
            return _fail(staging, ErrorCode.TOO_MANY_ATTEMPTS, f"interrupted {record.attempt}x")
        staging = base.moved(S.STAGING, attempt=record.attempt + 1)
        return staging, _begin_staging(staging)
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
        done, book = _finish(done, blame=False)
        return done, (fx.StopCandidate(upgrade_id=uid), status, *book)
    if was in (S.STARTING, S.CUTOVER_READY, S.HOLDING, S.COMMITTING, S.ROLLING_BACK):
        code = record.error_code if was is S.ROLLING_BACK and record.error_code else None
        return _roll_back(
            base,
            code or ErrorCode.AGENT_RESTARTED,
            record.error_detail if code else f"agent restarted in {was.value}",
        )
    # A terminal record that was not cleared: clear it.
    return base.moved(S.IDLE), (fx.PersistInFlight(record=None),)
