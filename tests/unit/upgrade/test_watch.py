"""After the commit: the watch window, Succeeded, the launcher's post-commit rollback, the
previous version kept (ADR-022, "After the commit"). Table-driven like ``test_transitions``,
plus the pure rules the launcher applies (``core.upgrade.watch``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import msgspec
import pytest

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.contracts.upgrade import UpgradeTimeouts
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.machine import step
from harmony_fleet.core.upgrade.records import InFlight, Memory
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import WATCH_SETTLE_S, ErrorCode, TimerKind
from harmony_fleet.core.upgrade.watch import (
    FIRST_TOUCH_MIN_S,
    LIVENESS_MIN_S,
    STABLE_S,
    START_GRACE_S,
    FailureCount,
    RollbackNote,
    WatchNote,
    WatchReason,
    crash_loop,
    first_touch_within,
    is_failure,
    is_silent,
    remaining,
    stable_for,
    stale_after,
)

from .support import (
    COMMIT_AT,
    NEW,
    OLD,
    TIMEOUTS,
    U1,
    U2,
    S,
    at,
    fresh,
    kinds,
    marker,
    only,
    seen,
    statuses,
    stop,
)

WINDOW = TIMEOUTS.watch_s
NOTE = RollbackNote(
    upgrade_id=U1,
    previous=OLD,
    target=NEW,
    reason=WatchReason.CRASH_LOOP,
    detail="2.0.0 failed 3 times within 9 s of the commit",
    exit_codes=(3, 3, 3),
    log_tail=("build fault: crashing",),
    rolled_back_at=COMMIT_AT + 9,
)


def record(state: S, **changes: object) -> InFlight:
    base = InFlight(
        marker=marker(), from_version=OLD, state=state, started_at=10.0, committed_at=COMMIT_AT
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def restarted(
    state: S,
    *,
    running: Version = NEW,
    current: Version = NEW,
    since_commit_s: float | None = 5.0,
    note: RollbackNote | None = None,
    watched: bool = True,
    **changes: object,
) -> ev.AgentRestarted:
    return ev.AgentRestarted(
        record=record(state, **changes),
        current_version=current,
        post_commit=note,
        since_commit_s=since_commit_s,
    )


def new_main(*, watched: bool = True) -> Snapshot:
    return replace(fresh(running=NEW), watched=watched)


@dataclass(frozen=True)
class WRow:
    name: str
    before: Callable[[], Snapshot]
    event: ev.Event
    end: S
    effects: tuple[str, ...]
    phase: P | None = None
    code: ErrorCode | None = None


def _subsequence(needle: tuple[str, ...], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(n == h for h in it) for n in needle)


_SUCCEED = ("EndWatch", "PersistInFlight", "RecordPrevious", "RecordFinished", "WriteStatus")

WATCH_ROWS = [
    WRow(
        "the stop arms the watch with the swap",
        lambda: at(S.HOLDING),
        stop(),
        S.COMMITTING,
        ("CancelTimer", "PersistInFlight", "SwapCurrent"),
    ),
    WRow(
        "new main inside the window -> watching",
        new_main,
        restarted(S.COMMITTED),
        S.WATCHING,
        ("StopCandidate", "RecordFinished", "PersistInFlight", "WriteStatus", "ScheduleTimer"),
        P.COMMITTED,
    ),
    WRow(
        "new main restarted inside its window keeps watching",
        new_main,
        restarted(S.WATCHING, since_commit_s=100),
        S.WATCHING,
        ("PersistInFlight", "WriteStatus", "ScheduleTimer"),
        P.COMMITTED,
    ),
    WRow(
        "new main restarted after the window must still prove a steady run",
        new_main,
        restarted(S.WATCHING, since_commit_s=WINDOW + 1),
        S.WATCHING,
        ("StopCandidate", "PersistInFlight", "WriteStatus", "ScheduleTimer"),
        P.COMMITTED,
    ),
    WRow(
        "new main with no launcher to watch it -> succeeded at once",
        lambda: new_main(watched=False),
        restarted(S.COMMITTED),
        S.SUCCEEDED,
        ("StopCandidate", *_SUCCEED, "CollectGarbage"),
        P.SUCCEEDED,
    ),
    WRow(
        "watch passed -> succeeded, previous kept, garbage collected",
        lambda: at(S.WATCHING),
        ev.WatchPassed(upgrade_id=U1),
        S.SUCCEEDED,
        (*_SUCCEED, "CollectGarbage"),
        P.SUCCEEDED,
    ),
    WRow(
        "succeeded record re-asserted after a restart",
        new_main,
        restarted(S.SUCCEEDED),
        S.SUCCEEDED,
        _SUCCEED,
        P.SUCCEEDED,
    ),
    WRow(
        "previous version finds the launcher's note -> rolled back, post_commit",
        fresh,
        restarted(S.WATCHING, running=OLD, current=OLD, note=NOTE),
        S.ROLLED_BACK,
        (
            "StopCandidate",
            "PersistInFlight",
            "RememberFailedVersion",
            "RecordFinished",
            "WriteStatus",
            "EndWatch",
        ),
        P.ROLLED_BACK,
        ErrorCode.POST_COMMIT,
    ),
    WRow(
        "new marker after success starts",
        lambda: at(S.SUCCEEDED),
        seen(marker(U2, "3.0")),
        S.STAGING,
        ("Stage",),
        P.STAGING,
    ),
    WRow(
        "marker for the running version after success: nothing to do",
        lambda: at(S.SUCCEEDED),
        seen(marker(U2, NEW)),
        S.IDLE,
        ("RecordFinished", "WriteStatus"),
        P.SUCCEEDED,
        ErrorCode.ALREADY_RUNNING,
    ),
    WRow(
        "skipped version after success is refused",
        lambda: replace(at(S.SUCCEEDED), memory=Memory(failed_versions=frozenset({"3.0"}))),
        seen(marker(U2, "3.0")),
        S.FAILED,
        ("WriteStatus",),
        P.FAILED,
        ErrorCode.VERSION_FAILED_BEFORE,
    ),
]


@pytest.mark.parametrize("row", WATCH_ROWS, ids=[r.name for r in WATCH_ROWS])
def test_watch_transition(row: WRow) -> None:
    after, effects = step(row.before(), row.event)
    assert after.state is row.end
    assert _subsequence(row.effects, kinds(effects)), kinds(effects)
    if row.phase is not None:
        assert statuses(effects)[-1].phase is row.phase
    if row.code is not None:
        assert statuses(effects)[-1].error_code is row.code


# --- the commit arms the watch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("snap_change", "timeouts"),
    [
        ({"watched": False}, TIMEOUTS),
        ({}, UpgradeTimeouts(watch_s=0)),
    ],
    ids=["no launcher watches", "watch_s 0"],
)
def test_no_watch_plan_without_a_watch(
    snap_change: dict[str, object], timeouts: UpgradeTimeouts
) -> None:
    m = msgspec.structs.replace(marker(), timeouts=timeouts)
    snap = at(S.HOLDING, replace(fresh(), **snap_change))  # type: ignore[arg-type]
    snap = replace(snap, hand=replace(snap.upgrade, marker=m))
    _, effects = step(snap, stop())
    (swap,) = only(effects, fx.SwapCurrent)
    assert swap.watch is None


def test_the_commit_time_is_the_stops_arrival_and_is_persisted() -> None:
    snap, effects = step(at(S.HOLDING), stop(at=123.0))
    assert snap.upgrade.committed_at == 123.0
    (persisted,) = only(effects, fx.PersistInFlight)
    assert persisted.record is not None and persisted.record.committed_at == 123.0
    snap, effects = step(snap, ev.CommitDone(upgrade_id=U1))
    assert statuses(effects)[-1].watch_until == 123.0 + WINDOW


def test_a_failed_commit_ends_the_watch_it_armed() -> None:
    _, effects = step(at(S.COMMITTING), ev.CommitFailed(upgrade_id=U1, detail="EIO"))
    assert fx.EndWatch(upgrade_id=U1) in effects


# --- the new main on probation ----------------------------------------------------------------


def test_the_watch_timer_covers_what_is_left_of_the_window_plus_a_settling_grace() -> None:
    _, effects = step(new_main(), restarted(S.COMMITTED, since_commit_s=40))
    (timer,) = only(effects, fx.ScheduleTimer)
    assert timer == fx.ScheduleTimer(
        kind=TimerKind.WATCH, delay_s=WINDOW - 40 + WATCH_SETTLE_S, upgrade_id=U1
    )


def test_success_keeps_the_previous_version_and_protects_it_from_collection() -> None:
    _, effects = step(at(S.WATCHING), ev.WatchPassed(upgrade_id=U1))
    assert only(effects, fx.RecordPrevious) == [fx.RecordPrevious(version=OLD)]
    (gc,) = only(effects, fx.CollectGarbage)
    assert gc.protect == frozenset({OLD, NEW})
    assert kinds(effects)[-1] == "CollectGarbage", "collection comes after the truth is told"
    (persisted,) = only(effects, fx.PersistInFlight)
    assert persisted.record is not None and persisted.record.state is S.SUCCEEDED


def test_a_marker_during_the_window_waits_for_it() -> None:
    snap, effects = step(at(S.WATCHING), seen(marker(U2, "3.0")))
    assert snap.state is S.WATCHING and snap.pending is not None
    assert "Stage" not in kinds(effects)
    assert statuses(effects)[-1].pending_upgrade_id == U2
    snap, effects = step(snap, ev.WatchPassed(upgrade_id=U1))
    assert kinds(effects)[-1] == "Resubmit"


def test_a_late_stop_during_the_window_is_acknowledged_without_a_swap() -> None:
    before = at(S.WATCHING)
    after, effects = step(before, stop(cmd="late"))
    assert after == before
    (reply,) = effects
    assert isinstance(reply, fx.ReplyToStop) and reply.code is ReplyCode.OK


def test_a_watch_timer_of_another_upgrade_changes_nothing() -> None:
    before = at(S.WATCHING)
    assert step(before, ev.WatchPassed(upgrade_id=U2)) == (before, ())


def test_staging_done_records_the_verified_hash() -> None:
    _, effects = step(at(S.STAGING), ev.StagingDone(upgrade_id=U1))
    assert only(effects, fx.RecordInstalled) == [fx.RecordInstalled(version=NEW, sha256="0" * 64)]


# --- the launcher rolled it back ---------------------------------------------------------------


@pytest.mark.parametrize("state", [S.COMMITTING, S.COMMITTED, S.WATCHING])
def test_the_rollback_note_becomes_the_status_and_a_skip_list_entry(state: S) -> None:
    snap, effects = step(fresh(), restarted(state, running=OLD, current=OLD, note=NOTE))
    assert snap.state is S.ROLLED_BACK
    status = statuses(effects)[-1]
    assert status.error_code is ErrorCode.POST_COMMIT
    assert status.upgrade.candidate_exit_code == 3
    assert status.upgrade.candidate_log_tail == NOTE.log_tail
    assert (
        "crash_loop" in status.upgrade.error_detail and NOTE.detail in status.upgrade.error_detail
    )
    assert only(effects, fx.RememberFailedVersion) == [fx.RememberFailedVersion(version=NEW)]
    assert NEW in snap.memory.failed_versions
    assert "Revert" not in kinds(effects), "the launcher already put current back"
    assert kinds(effects)[-1] == "EndWatch", "the notes go last: a crash before re-reads them"


def test_the_post_commit_rollback_is_refused_next_time_unless_forced() -> None:
    snap, _ = step(fresh(), restarted(S.WATCHING, running=OLD, current=OLD, note=NOTE))
    again, effects = step(snap, seen(marker(U2, NEW)))
    assert again.state is S.FAILED
    assert statuses(effects)[-1].error_code is ErrorCode.VERSION_FAILED_BEFORE
    forced, _ = step(snap, seen(marker(U2, NEW, force=True)))
    assert forced.state is S.STAGING


def test_a_note_of_another_upgrade_is_not_ours() -> None:
    other = msgspec.structs.replace(NOTE, upgrade_id=UpgradeId("u-other"))
    snap, effects = step(fresh(), restarted(S.WATCHING, running=OLD, current=OLD, note=other))
    assert snap.state is S.ROLLED_BACK
    assert statuses(effects)[-1].error_code is ErrorCode.LAYOUT_INCONSISTENT
    snap, _ = step(fresh(), restarted(S.COMMITTING, running=OLD, current=OLD, note=other))
    assert snap.state is S.ROLLING_BACK  # the swap never happened: the usual revert


def test_a_note_is_ignored_while_current_still_names_the_target() -> None:
    """A launcher that died between its note and its swap finishes the swap itself; meanwhile
    the new main goes on watching."""
    snap, _ = step(new_main(), restarted(S.WATCHING, note=NOTE))
    assert snap.state is S.WATCHING


def test_a_rolled_back_record_reasserted_clears_the_notes_again() -> None:
    snap, _ = step(fresh(), restarted(S.WATCHING, running=OLD, current=OLD, note=NOTE))
    assert snap.state is S.ROLLED_BACK
    rec = replace(record(S.ROLLED_BACK), error_code=ErrorCode.POST_COMMIT, candidate_exit_code=3)
    _, effects = step(fresh(), ev.AgentRestarted(record=rec, current_version=OLD))
    assert fx.EndWatch(upgrade_id=U1) in effects
    assert statuses(effects)[-1].error_code is ErrorCode.POST_COMMIT


# --- the launcher's rules (pure) -------------------------------------------------------------

WATCH = WatchNote(
    upgrade_id=U1,
    previous=OLD,
    target=NEW,
    committed_at=1000.0,
    window_s=20.0,
    max_failures=3,
    stale_after_s=5.0,
)


def test_the_note_watches_only_the_target() -> None:
    assert WATCH.watches(NEW) and not WATCH.watches(OLD) and not WATCH.watches(None)
    assert WATCH.ends_at == 1020.0


def test_a_run_after_the_window_waits_for_a_steady_run_before_success() -> None:
    """A crash loop slower than the window never gets to say Succeeded: each process must
    live stable_for(window) before its timer fires."""
    _, effects = step(new_main(), restarted(S.WATCHING, since_commit_s=WINDOW * 3))
    (timer,) = only(effects, fx.ScheduleTimer)
    assert timer.delay_s == stable_for(WINDOW) + WATCH_SETTLE_S
    assert stable_for(WINDOW) == STABLE_S and stable_for(1.0) == 1.0


@pytest.mark.parametrize(
    ("code", "signal", "stopping", "counts"),
    [
        (3, None, False, True),
        (None, "SIGKILL", False, True),
        (0, None, False, False),
        (3, None, True, False),
        (None, "SIGTERM", True, False),
    ],
)
def test_what_counts_as_a_failed_start(
    code: int | None, signal: str | None, stopping: bool, counts: bool
) -> None:
    assert is_failure(code, signal, stopping=stopping) is counts


def test_a_crash_loop_is_max_failures_of_this_upgrade() -> None:
    count = FailureCount(upgrade_id=U1)
    for _ in range(2):
        count = count.add(3)
        assert not crash_loop(WATCH, count)
    count = count.add(None)
    assert crash_loop(WATCH, count) and count.exit_codes == (3, 3, None)
    assert not crash_loop(WATCH, FailureCount(upgrade_id=U2, exit_codes=(1, 1, 1)))


def test_silence_once_the_run_has_touched_the_file() -> None:
    # durations on the launcher's own monotonic clock: since the run started, since the last
    # change of the liveness file it saw
    assert not is_silent(WATCH, run_s=7.0, quiet_s=4.0)
    assert is_silent(WATCH, run_s=8.5, quiet_s=5.5)


def test_a_slow_start_is_not_a_silence_but_a_start_that_never_beats_is() -> None:
    # Until this run changes the file (the old main's touches do not count: quiet_s is None),
    # it has the generous first-touch bound, never less than the note's start grace.
    bound = first_touch_within(WATCH)
    assert bound >= max(START_GRACE_S, FIRST_TOUCH_MIN_S)
    assert not is_silent(WATCH, run_s=START_GRACE_S + 1, quiet_s=None)
    assert not is_silent(WATCH, run_s=bound, quiet_s=None)
    assert is_silent(WATCH, run_s=bound + 1, quiet_s=None)
    no_check = msgspec.structs.replace(WATCH, stale_after_s=0)
    assert not is_silent(no_check, run_s=1e9, quiet_s=None)
    assert not is_silent(no_check, run_s=1e9, quiet_s=1e9)


def test_stale_after_scales_with_the_heartbeat_interval_with_a_floor() -> None:
    assert stale_after(0.5) == LIVENESS_MIN_S
    assert stale_after(5.0) == 20.0


@pytest.mark.parametrize(
    ("elapsed", "left"),
    [(10.0, 10.0), (25.0, 0.0), (None, 20.0), (0.0, 20.0)],
)
def test_remaining_window(elapsed: float | None, left: float) -> None:
    assert remaining(20.0, elapsed) == left
    assert remaining(0.0, elapsed) == 0.0


def test_the_rollback_note_reports_the_last_exit_code() -> None:
    assert NOTE.exit_code == 3
    assert msgspec.structs.replace(NOTE, exit_codes=()).exit_code is None
