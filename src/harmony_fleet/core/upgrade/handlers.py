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
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.acceptance import Verdict, judge
from harmony_fleet.core.upgrade.outcomes import (
    NO_EFFECTS,
    Result,
    fail,
    finish,
    roll_back,
    start,
    succeed,
    target_of,
    then_pending,
    uid_of,
)
from harmony_fleet.core.upgrade.records import remember_finished
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import (
    BLAMES_VERSION,
    SELF_TEST_GRACE_S,
    ErrorCode,
    TimerKind,
    UpgradeState,
)

S = UpgradeState
_NO_EFFECTS = NO_EFFECTS


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
        return fail(waiting, ErrorCode.SUPERSEDED, "a newer marker arrived")
    return start(snap, event)


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
        fx.RecordInstalled(version=target_of(snap), sha256=snap.marker.sha256),
        verifying.status(),
        fx.ScheduleTimer(
            kind=TimerKind.SELF_TEST, delay_s=timeout + SELF_TEST_GRACE_S, upgrade_id=uid_of(snap)
        ),
        fx.RunSelfTest(marker=snap.marker, timeout_s=timeout),
    )


def on_staging_failed(snap: Snapshot, event: ev.StagingFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return fail(snap, event.code, event.detail)


def on_staging_timeout(snap: Snapshot, event: ev.StagingTimedOut) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return fail(snap, ErrorCode.STAGING_TIMEOUT, "staging deadline passed")


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
    return fail(
        snap,
        ErrorCode.SELF_TEST_FAILED,
        event.detail,
        exit_code=event.exit_code,
        log_tail=event.log_tail,
    )


def on_self_test_timeout(snap: Snapshot, event: ev.SelfTestTimedOut) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return fail(snap, ErrorCode.SELF_TEST_TIMEOUT, "self-test did not finish")


# --- cutover -------------------------------------------------------------------------------


def on_candidate_started(snap: Snapshot, event: ev.CandidateStarted) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    assert snap.marker is not None
    uid, timeouts = uid_of(snap), snap.marker.timeouts
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
    return roll_back(snap, ErrorCode.CANDIDATE_START_FAILED, event.detail)


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
            kind=TimerKind.HOLD, delay_s=snap.marker.timeouts.hold_s, upgrade_id=uid_of(snap)
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
    return roll_back(
        snap,
        ErrorCode.CANDIDATE_EXITED,
        f"candidate exited with code {event.exit_code}",
        exit_code=event.exit_code,
        log_tail=event.log_tail,
    )


def on_cutover_timeout(snap: Snapshot, event: ev.CutoverTimeout) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return roll_back(
        snap, ErrorCode.CUTOVER_TIMEOUT, "no stop and no candidate heartbeat before the deadline"
    )


def on_hold_timeout(snap: Snapshot, event: ev.HoldTimeout) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return roll_back(
        snap, ErrorCode.HOLD_TIMEOUT, "candidate heartbeats seen, but no stop before the deadline"
    )


# --- the stop and the commit ---------------------------------------------------------------


def _reply(event: ev.StopReceived, code: ReplyCode, message: str) -> fx.ReplyToStop:
    return fx.ReplyToStop(command_id=event.command_id, code=code, message=message)


def _watch_plan(committing: Snapshot) -> fx.WatchPlan | None:
    """The watch the old agent arms with its commit (None when this device has none)."""
    window = committing.watch_window_s
    if window <= 0:
        return None
    assert committing.marker is not None and committing.from_version is not None
    return fx.WatchPlan(
        upgrade_id=uid_of(committing),
        previous=committing.from_version,
        target=target_of(committing),
        committed_at=committing.committed_at,
        window_s=window,
        max_failures=committing.marker.timeouts.watch_max_failures,
    )


#: States in which the upgrade in hand has committed: a late stop for it is acknowledged again.
_AFTER_COMMIT = frozenset({S.COMMITTED, S.WATCHING, S.SUCCEEDED})


def on_stop(snap: Snapshot, event: ev.StopReceived) -> Result:
    armed = snap.armed_for
    if armed is not None and event.upgrade_id == armed:
        committing = snap.moved(
            S.COMMITTING, stop_commands=(event.command_id,), committed_at=event.received_at
        )
        return committing, (
            fx.DisarmStop(),
            fx.CancelTimer(kind=TimerKind.CUTOVER),
            fx.CancelTimer(kind=TimerKind.HOLD),
            fx.PersistInFlight(record=committing.record()),
            fx.SwapCurrent(
                upgrade_id=armed, version=target_of(snap), watch=_watch_plan(committing)
            ),
        )
    if armed is not None:
        return snap, (_reply(event, ReplyCode.WRONG_UPGRADE, f"armed for {armed}"),)
    if snap.state is S.COMMITTING and snap.belongs(event.upgrade_id):
        if event.command_id in snap.stop_commands:
            return snap, _NO_EFFECTS
        return replace(snap, stop_commands=(*snap.stop_commands, event.command_id)), _NO_EFFECTS
    if snap.state in _AFTER_COMMIT and snap.belongs(event.upgrade_id):
        return snap, (_reply(event, ReplyCode.OK, "already committed"),)
    return snap, (_reply(event, ReplyCode.NOT_ARMED, f"not armed ({snap.state.value})"),)


def on_commit_done(snap: Snapshot, event: ev.CommitDone) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    committed = snap.moved(S.COMMITTED, stop_commands=())
    uid = uid_of(snap)
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
    return roll_back(snap, ErrorCode.COMMIT_FAILED, event.detail, extra=replies)


def on_watch_passed(snap: Snapshot, event: ev.WatchPassed) -> Result:
    """The new main outlived its watch window: Succeeded (the launcher no longer judges it)."""
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    return succeed(snap)


# --- the revert ----------------------------------------------------------------------------


def on_revert_done(snap: Snapshot, event: ev.RevertDone) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    done = snap.moved(S.ROLLED_BACK)
    done, book = finish(done, blame=snap.error_code in BLAMES_VERSION)
    return then_pending(done, book)


def on_revert_failed(snap: Snapshot, event: ev.RevertFailed) -> Result:
    if not snap.belongs(event.upgrade_id):
        return snap, _NO_EFFECTS
    reason = snap.error_code.value if snap.error_code else "rollback"
    done = snap.moved(
        S.FAILED,
        error_code=ErrorCode.REVERT_FAILED,
        error_detail=f"{reason}, then the revert failed: {event.detail}",
    )
    done, book = finish(done, blame=snap.error_code in BLAMES_VERSION)
    return then_pending(done, book)
