"""How upgrades begin and end: the building blocks every transition handler uses.

Beginning (judge the marker at rest, then start, refuse, or succeed at once), failing before a
candidate exists (clean the staging folder only), rolling back once a candidate may exist
(persist, revert), the end of a committed upgrade (watch window passed: Succeeded, the
previous version kept, older ones collected), and the book-keeping of an end (finished ids, skip
list, the record, a waiting marker resubmitted) are written once, here, so every path ends the
same way.
"""

from __future__ import annotations

from dataclasses import replace

from harmony_fleet.contracts.local_state import UpgradeInHand
from harmony_fleet.contracts.upgrade import AgentUpgradePhase
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.acceptance import Verdict, judge_at_rest
from harmony_fleet.core.upgrade.records import Memory, remember_finished
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import (
    BLAMES_VERSION,
    ErrorCode,
    TimerKind,
    UpgradeState,
)

S = UpgradeState
Result = tuple[Snapshot, tuple[fx.Effect, ...]]
NO_EFFECTS: tuple[fx.Effect, ...] = ()


def ignore(snap: Snapshot, event: object) -> Result:
    """A late or duplicate event: nothing changes."""
    return snap, NO_EFFECTS


def finish(
    done: Snapshot,
    *,
    blame: bool,
    phase: AgentUpgradePhase | None = None,
    keep_record: bool = True,
) -> Result:
    """The end of an upgrade, in the one order that survives a crash between any two effects.

    1. the record is saved *in its terminal state* (a restarted agent re-asserts it, never
       resumes it), or cleared when the verdict is cheap to reach again (``keep_record=False``);
    2. the skip list and the finished ids are updated (replays are ignored from now on);
    3. the terminal status is written last; a restart re-writes it from the record, so a status
       write lost with the process is not lost for good.
    """
    uid, target = done.upgrade.upgrade_id, done.upgrade.target
    failed = done.memory.failed_versions
    out: list[fx.Effect] = [fx.PersistInFlight(record=done.record() if keep_record else None)]
    if blame:
        failed = failed | {target}
        out.append(fx.RememberFailedVersion(version=target))
    out += [fx.RecordFinished(upgrade_id=uid), done.status(phase)]
    memory = Memory(finished=remember_finished(done.memory.finished, uid), failed_versions=failed)
    return replace(done, memory=memory), tuple(out)


def start(snap: Snapshot, seen: ev.MarkerSeen) -> Result:
    """Judge ``seen`` at rest and begin it (or end it at once)."""
    verdict = judge_at_rest(snap, seen.marker)
    hand = UpgradeInHand(
        marker=seen.marker, from_version=snap.running_version, started_at=seen.seen_at
    )
    fresh = replace(snap, hand=hand, progress=None, pending=None, stop_commands=())
    if verdict is Verdict.ALREADY_RUNNING:
        done = fresh.moved(S.IDLE, replace(hand, error_code=ErrorCode.ALREADY_RUNNING))
        return finish(done, blame=False, phase=AgentUpgradePhase.SUCCEEDED, keep_record=False)
    if verdict is Verdict.REFUSE_FAILED_BEFORE:
        refused = replace(
            hand,
            error_code=ErrorCode.VERSION_FAILED_BEFORE,
            error_detail=f"{seen.marker.target_version} failed on this device before; "
            "set force to retry it",
        )
        return finish(fresh.moved(S.FAILED, refused), blame=False, keep_record=False)
    staging = fresh.moved(S.STAGING)
    return staging, begin_staging(staging)


def begin_staging(snap: Snapshot) -> tuple[fx.Effect, ...]:
    hand = snap.upgrade
    return (
        fx.PersistInFlight(record=snap.record()),
        snap.status(),
        fx.ScheduleTimer(
            kind=TimerKind.STAGING,
            delay_s=hand.marker.timeouts.download_s,
            upgrade_id=hand.upgrade_id,
        ),
        fx.Stage(marker=hand.marker),
    )


def then_pending(snap: Snapshot, effects: tuple[fx.Effect, ...]) -> Result:
    """After an upgrade ended: hand the waiting marker back to be judged at rest, if any."""
    if snap.pending is None:
        return snap, effects
    return replace(snap, pending=None), (*effects, fx.Resubmit(event=snap.pending))


def fail(
    snap: Snapshot,
    code: ErrorCode,
    detail: str = "",
    *,
    exit_code: int | None = None,
    log_tail: tuple[str, ...] = (),
) -> Result:
    """End a pre-candidate upgrade as Failed: only the staging folder is cleaned up."""
    failed = snap.moved(
        S.FAILED,
        replace(
            snap.upgrade,
            error_code=code,
            error_detail=detail,
            candidate_exit_code=exit_code,
            candidate_log_tail=log_tail,
        ),
    )
    failed, book = finish(failed, blame=code in BLAMES_VERSION)
    return then_pending(failed, (*_abort(snap), *book))


def supersede(snap: Snapshot, newer: ev.MarkerSeen) -> Result:
    """End a pre-candidate upgrade because ``newer`` replaced it, then judge ``newer``.

    Like :func:`fail` (only the staging folder is cleaned up; the version is not blamed), but
    the upgrade ends in a phase of its own, Superseded, naming the newer upgrade, and that
    status is written before the newer one starts: whoever follows it sees it end.
    """
    by = newer.marker.upgrade_id
    hand = replace(
        snap.upgrade,
        error_code=ErrorCode.SUPERSEDED,
        error_detail=f"superseded by upgrade {by}",
        superseded_by=by,
    )
    done, book = finish(replace(snap.moved(S.SUPERSEDED, hand), pending=newer), blame=False)
    return then_pending(done, (*_abort(snap), *book))


def superseded_while_waiting(snap: Snapshot, newer: ev.MarkerSeen) -> Result:
    """``newer`` replaces the marker that waited behind the upgrade in hand.

    The one that waited never started, and now never will: it ends as Superseded (its own
    status, then the current upgrade's again, so the device's key ends on the one under way)
    and is remembered as finished, so a replay of it is ignored. Only the latest waits.
    """
    old = snap.pending
    if old is None or old.marker.upgrade_id == newer.marker.upgrade_id:
        waiting = replace(snap, pending=newer)
        return waiting, (waiting.status(),)
    uid, by = old.marker.upgrade_id, newer.marker.upgrade_id
    never = UpgradeInHand(
        marker=old.marker,
        from_version=snap.running_version,
        started_at=old.seen_at,
        error_code=ErrorCode.SUPERSEDED,
        error_detail=f"superseded by upgrade {by} before it started",
        superseded_by=by,
    )
    memory = replace(snap.memory, finished=remember_finished(snap.memory.finished, uid))
    waiting = replace(snap, pending=newer, memory=memory)
    return waiting, (
        fx.RecordFinished(upgrade_id=uid),
        fx.WriteStatus(upgrade=never, phase=AgentUpgradePhase.SUPERSEDED),
        waiting.status(),
    )


def _abort(snap: Snapshot) -> tuple[fx.Effect, ...]:
    """Stop what still runs for a pre-candidate upgrade and clean its staging up."""
    return (
        fx.CancelWork(),  # whatever still runs for it (nothing, if its end brought us here)
        fx.CancelTimer(kind=TimerKind.STAGING),
        fx.CancelTimer(kind=TimerKind.SELF_TEST),
        fx.CleanupStaging(version=snap.upgrade.target),
    )


def roll_back(
    snap: Snapshot,
    code: ErrorCode,
    detail: str = "",
    *,
    exit_code: int | None = None,
    log_tail: tuple[str, ...] = (),
    extra: tuple[fx.Effect, ...] = (),
) -> Result:
    """Begin the revert of an upgrade whose candidate may exist."""
    hand = snap.upgrade
    reverting = replace(
        hand,
        error_code=code,
        error_detail=detail,
        candidate_exit_code=exit_code if exit_code is not None else hand.candidate_exit_code,
        candidate_log_tail=log_tail or hand.candidate_log_tail,
    )
    rolling = replace(snap.moved(S.ROLLING_BACK, reverting), stop_commands=())
    out: list[fx.Effect] = [
        fx.CancelTimer(kind=TimerKind.CUTOVER),
        fx.CancelTimer(kind=TimerKind.HOLD),
        *extra,
        fx.PersistInFlight(record=rolling.record()),
        fx.Revert(upgrade_id=hand.upgrade_id, previous=hand.from_version, target=hand.target),
        # A watch note armed for a commit that then failed names a target that never ran.
        fx.EndWatch(upgrade_id=hand.upgrade_id),
    ]
    return rolling, tuple(out)


def succeed(snap: Snapshot) -> Result:
    """The new main instance outlived its watch window (or has none): the upgrade is final.

    Ordered like :func:`finish`: the watch is ended first (the launcher stops judging), the
    record saved as Succeeded (a restart re-asserts it), the previous version remembered and the
    finished id kept, then the status; garbage collection last, since it only frees space and is
    safe to repeat. A marker that waited for the window is then judged at rest.
    """
    uid, target = snap.upgrade.upgrade_id, snap.upgrade.target
    memory = replace(snap.memory, finished=remember_finished(snap.memory.finished, uid))
    done = replace(snap, state=S.SUCCEEDED, memory=memory)
    previous = done.upgrade.from_version
    out: list[fx.Effect] = [fx.EndWatch(upgrade_id=uid), fx.PersistInFlight(record=done.record())]
    if previous != target:
        out.append(fx.RecordPrevious(version=previous))
    out += [
        fx.RaiseFloor(version=target),
        fx.RecordFinished(upgrade_id=uid),
        done.status(),
        fx.CollectGarbage(
            protect=frozenset(v for v in (done.running_version, target, previous) if v)
        ),
    ]
    return then_pending(done, tuple(out))
