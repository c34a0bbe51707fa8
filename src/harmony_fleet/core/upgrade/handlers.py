"""The transition handlers of the agent-side machine: pure functions ``(snapshot, event)``.

Each handler returns the next snapshot and the effects to perform, in order. Which handler runs
for which (state, event) pair, which states it may lead to, and whether it only hears events of
the upgrade in hand (``same_upgrade``: work that ended, timers) is declared in
:data:`machine.TABLE`; a handler never checks any of that, only the facts that table rows cannot
express (does this heartbeat belong to our candidate? is this the armed upgrade id?).
"""

from __future__ import annotations

from dataclasses import replace

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.upgrade import SELF_TEST_UNAVAILABLE_EXIT
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
    supersede,
    superseded_while_waiting,
    then_pending,
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


# --- markers -------------------------------------------------------------------------------


def on_marker(snap: Snapshot, event: ev.MarkerSeen) -> Result:
    verdict = judge(snap, event.marker)
    if verdict in (Verdict.REPLAY, Verdict.DUPLICATE, Verdict.HANDING_OVER):
        return snap, NO_EFFECTS
    if verdict is Verdict.DEFER:
        if snap.pending is not None and snap.pending.marker == event.marker:
            return snap, NO_EFFECTS
        return superseded_while_waiting(snap, event)
    if verdict is Verdict.SUPERSEDE:
        return supersede(snap, event)
    return start(snap, event)


# --- staging and verification --------------------------------------------------------------


def on_staging_progress(snap: Snapshot, event: ev.StagingProgress) -> Result:
    if event.progress == snap.progress:
        return snap, NO_EFFECTS
    nxt = replace(snap, progress=event.progress)
    return nxt, (nxt.status(),)


def on_staging_done(snap: Snapshot, event: ev.StagingDone) -> Result:
    hand = snap.upgrade
    verifying = snap.moved(S.VERIFYING)
    timeout = hand.marker.timeouts.self_test_s
    return verifying, (
        fx.CancelTimer(kind=TimerKind.STAGING),
        fx.RecordInstalled(version=hand.target, sha256=hand.marker.sha256),
        verifying.status(),
        fx.ScheduleTimer(
            kind=TimerKind.SELF_TEST,
            delay_s=timeout + SELF_TEST_GRACE_S,
            upgrade_id=hand.upgrade_id,
        ),
        fx.RunSelfTest(marker=hand.marker, timeout_s=timeout),
    )


def on_staging_failed(snap: Snapshot, event: ev.StagingFailed) -> Result:
    return fail(snap, event.code, event.detail)


def on_staging_timeout(snap: Snapshot, event: ev.StagingTimedOut) -> Result:
    return fail(snap, ErrorCode.STAGING_TIMEOUT, "staging deadline passed")


def on_self_test_passed(snap: Snapshot, event: ev.SelfTestPassed) -> Result:
    starting = snap.moved(S.STARTING)
    return starting, (
        fx.CancelTimer(kind=TimerKind.SELF_TEST),
        fx.PersistInFlight(record=starting.record()),
        fx.StartCandidate(marker=snap.upgrade.marker),
    )


def on_self_test_failed(snap: Snapshot, event: ev.SelfTestFailed) -> Result:
    """Failed, and blamed, unless NATS was away: a NATS outage never blames a good version.

    Away means the self-test said so (it exits :data:`SELF_TEST_UNAVAILABLE_EXIT` when only
    its NATS check failed) or this agent saw it itself (an older artifact's self-test exits 1
    for anything).
    """
    code = ErrorCode.SELF_TEST_FAILED
    detail = event.detail
    if event.exit_code == SELF_TEST_UNAVAILABLE_EXIT or event.control_plane_lost:
        code = ErrorCode.SELF_TEST_INCONCLUSIVE
        detail = f"NATS was unreachable during the self-test: {event.detail}"
    return fail(snap, code, detail, exit_code=event.exit_code, log_tail=event.log_tail)


def on_self_test_timeout(snap: Snapshot, event: ev.SelfTestTimedOut) -> Result:
    if event.control_plane_lost:
        detail = "self-test did not finish while NATS was unreachable"
        return fail(snap, ErrorCode.SELF_TEST_INCONCLUSIVE, detail)
    return fail(snap, ErrorCode.SELF_TEST_TIMEOUT, "self-test did not finish")


# --- cutover -------------------------------------------------------------------------------


def on_candidate_started(snap: Snapshot, event: ev.CandidateStarted) -> Result:
    hand = snap.upgrade
    uid, timeouts = hand.upgrade_id, hand.marker.timeouts
    if hand.candidate_instance_id is not None:
        holding = snap.moved(S.HOLDING)
        timer = fx.ScheduleTimer(kind=TimerKind.HOLD, delay_s=timeouts.hold_s, upgrade_id=uid)
        return holding, (holding.status(), timer)
    ready = snap.moved(S.CUTOVER_READY)
    timer = fx.ScheduleTimer(kind=TimerKind.CUTOVER, delay_s=timeouts.cutover_s, upgrade_id=uid)
    return ready, (ready.status(), timer)


def on_candidate_start_failed(snap: Snapshot, event: ev.CandidateStartFailed) -> Result:
    return roll_back(snap, ErrorCode.CANDIDATE_START_FAILED, event.detail)


def _is_our_candidate(snap: Snapshot, event: ev.CandidateHeartbeatSeen) -> bool:
    return (
        event.instance_id != snap.instance_id
        and event.version == snap.target
        and (event.upgrade_id is None or snap.belongs(event.upgrade_id))
    )


def on_candidate_heartbeat(snap: Snapshot, event: ev.CandidateHeartbeatSeen) -> Result:
    if not _is_our_candidate(snap, event):
        return snap, NO_EFFECTS
    hand = snap.upgrade
    seen = replace(hand, candidate_instance_id=event.instance_id)
    if snap.state is not S.CUTOVER_READY:
        if hand.candidate_instance_id is not None:
            return snap, NO_EFFECTS
        return replace(snap, hand=seen), NO_EFFECTS
    holding = snap.moved(S.HOLDING, seen)
    return holding, (
        fx.CancelTimer(kind=TimerKind.CUTOVER),
        fx.ScheduleTimer(
            kind=TimerKind.HOLD, delay_s=hand.marker.timeouts.hold_s, upgrade_id=hand.upgrade_id
        ),
        holding.status(),
    )


def on_candidate_exited(snap: Snapshot, event: ev.CandidateExited) -> Result:
    if snap.state is S.COMMITTING:
        # The swap is under way on the operator's word; the exit is kept for the status.
        kept = replace(
            snap.upgrade, candidate_exit_code=event.exit_code, candidate_log_tail=event.log_tail
        )
        return replace(snap, hand=kept), NO_EFFECTS
    return roll_back(
        snap,
        ErrorCode.CANDIDATE_EXITED,
        f"candidate exited with code {event.exit_code}",
        exit_code=event.exit_code,
        log_tail=event.log_tail,
    )


def on_cutover_timeout(snap: Snapshot, event: ev.CutoverTimeout) -> Result:
    return roll_back(
        snap, ErrorCode.CUTOVER_TIMEOUT, "no stop and no candidate heartbeat before the deadline"
    )


def on_hold_timeout(snap: Snapshot, event: ev.HoldTimeout) -> Result:
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
    hand = committing.upgrade
    return fx.WatchPlan(
        upgrade_id=hand.upgrade_id,
        previous=hand.from_version,
        target=hand.target,
        committed_at=hand.committed_at,
        window_s=window,
        max_failures=hand.marker.timeouts.watch_max_failures,
    )


#: States in which the upgrade in hand has committed: a late stop for it is acknowledged again.
_AFTER_COMMIT = frozenset({S.COMMITTED, S.WATCHING, S.SUCCEEDED})


def on_stop(snap: Snapshot, event: ev.StopReceived) -> Result:
    armed = snap.armed_for
    if armed is not None and event.upgrade_id == armed:
        committing = replace(
            snap.moved(S.COMMITTING, replace(snap.upgrade, committed_at=event.received_at)),
            stop_commands=(event.command_id,),
        )
        return committing, (
            fx.CancelTimer(kind=TimerKind.CUTOVER),
            fx.CancelTimer(kind=TimerKind.HOLD),
            fx.PersistInFlight(record=committing.record()),
            fx.SwapCurrent(
                upgrade_id=armed, version=snap.upgrade.target, watch=_watch_plan(committing)
            ),
        )
    if armed is not None:
        return snap, (_reply(event, ReplyCode.WRONG_UPGRADE, f"armed for {armed}"),)
    if snap.state is S.COMMITTING and snap.belongs(event.upgrade_id):
        # Only reachable if a stop is handled while the swap is under way (the driver performs
        # the swap inside the stop's own dispatch, so in practice a second stop meets
        # Committed): it is answered with the commit's outcome.
        if event.command_id in snap.stop_commands:
            return snap, NO_EFFECTS
        return replace(snap, stop_commands=(*snap.stop_commands, event.command_id)), NO_EFFECTS
    if snap.state in _AFTER_COMMIT and snap.belongs(event.upgrade_id):
        return snap, (_reply(event, ReplyCode.OK, "already committed"),)
    return snap, (_reply(event, ReplyCode.NOT_ARMED, f"not armed ({snap.state.value})"),)


def on_commit_done(snap: Snapshot, event: ev.CommitDone) -> Result:
    uid = snap.upgrade.upgrade_id
    memory = replace(snap.memory, finished=remember_finished(snap.memory.finished, uid))
    committed = replace(snap, state=S.COMMITTED, stop_commands=(), memory=memory)
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
    replies = tuple(
        fx.ReplyToStop(command_id=c, code=ReplyCode.ERROR, message=f"commit failed: {event.detail}")
        for c in snap.stop_commands
    )
    return roll_back(snap, ErrorCode.COMMIT_FAILED, event.detail, extra=replies)


def on_watch_passed(snap: Snapshot, event: ev.WatchPassed) -> Result:
    """The new main outlived its watch window: Succeeded (the launcher no longer judges it)."""
    return succeed(snap)


# --- the revert ----------------------------------------------------------------------------


def on_revert_done(snap: Snapshot, event: ev.RevertDone) -> Result:
    done, book = finish(snap.moved(S.ROLLED_BACK), blame=snap.upgrade.error_code in BLAMES_VERSION)
    return then_pending(done, book)


def on_revert_failed(snap: Snapshot, event: ev.RevertFailed) -> Result:
    hand = snap.upgrade
    reason = hand.error_code.value if hand.error_code else "rollback"
    failed = replace(
        hand,
        error_code=ErrorCode.REVERT_FAILED,
        error_detail=f"{reason}, then the revert failed: {event.detail}",
    )
    done, book = finish(snap.moved(S.FAILED, failed), blame=hand.error_code in BLAMES_VERSION)
    return then_pending(done, book)
