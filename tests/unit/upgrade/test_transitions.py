"""Every transition of the table, one row each: from a state, an event, to a state, with the
effects that matter in the order that matters."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import Version
from harmony_fleet.contracts.upgrade import SELF_TEST_UNAVAILABLE_EXIT, UpgradeMarker
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.machine import TABLE, ProtocolViolation, step
from harmony_fleet.core.upgrade.states import ErrorCode, TimerKind

from .support import (
    CAND,
    COMMIT_AT,
    NEW,
    OLD,
    OTHER,
    OWN,
    TIMEOUTS,
    U1,
    U2,
    S,
    at,
    hb,
    kinds,
    marker,
    only,
    seen,
    statuses,
    stop,
)
from .test_watch import WATCH_ROWS


@dataclass(frozen=True)
class Row:
    name: str
    start: S
    event: ev.Event
    end: S
    effects: tuple[str, ...]
    """Effect type names that must appear, in this relative order."""
    phase: P | None = None
    code: ErrorCode | None = None


def _subsequence(needle: tuple[str, ...], hay: list[str]) -> bool:
    it = iter(hay)
    return all(any(n == h for h in it) for n in needle)


ROWS = [
    Row(
        "marker starts staging",
        S.IDLE,
        seen(),
        S.STAGING,
        ("PersistInFlight", "WriteStatus", "ScheduleTimer", "Stage"),
        P.STAGING,
    ),
    Row(
        "staging done -> self-test",
        S.STAGING,
        ev.StagingDone(upgrade_id=U1),
        S.VERIFYING,
        ("CancelTimer", "WriteStatus", "ScheduleTimer", "RunSelfTest"),
        P.VERIFYING,
    ),
    Row(
        "download rejected -> failed",
        S.STAGING,
        ev.StagingFailed(upgrade_id=U1, code=ErrorCode.INTEGRITY, detail="sha"),
        S.FAILED,
        ("CleanupStaging", "PersistInFlight", "RecordFinished", "WriteStatus"),
        P.FAILED,
        ErrorCode.INTEGRITY,
    ),
    Row(
        "staging deadline -> failed",
        S.STAGING,
        ev.StagingTimedOut(upgrade_id=U1),
        S.FAILED,
        ("CancelWork", "CleanupStaging", "RecordFinished", "WriteStatus"),
        P.FAILED,
        ErrorCode.STAGING_TIMEOUT,
    ),
    Row(
        "self-test passed -> start candidate",
        S.VERIFYING,
        ev.SelfTestPassed(upgrade_id=U1),
        S.STARTING,
        ("CancelTimer", "PersistInFlight", "StartCandidate"),
    ),
    Row(
        "self-test failed -> failed, blamed",
        S.VERIFYING,
        ev.SelfTestFailed(upgrade_id=U1, detail="boom", exit_code=3, log_tail=("x",)),
        S.FAILED,
        ("CleanupStaging", "RememberFailedVersion", "RecordFinished", "WriteStatus"),
        P.FAILED,
        ErrorCode.SELF_TEST_FAILED,
    ),
    Row(
        "self-test failed while NATS was away -> failed, not blamed",
        S.VERIFYING,
        ev.SelfTestFailed(upgrade_id=U1, detail="nats", exit_code=1, control_plane_lost=True),
        S.FAILED,
        ("CleanupStaging", "RecordFinished", "WriteStatus"),
        P.FAILED,
        ErrorCode.SELF_TEST_INCONCLUSIVE,
    ),
    Row(
        "self-test says NATS was away -> failed, not blamed",
        S.VERIFYING,
        ev.SelfTestFailed(upgrade_id=U1, detail="nats", exit_code=SELF_TEST_UNAVAILABLE_EXIT),
        S.FAILED,
        ("CleanupStaging", "RecordFinished", "WriteStatus"),
        P.FAILED,
        ErrorCode.SELF_TEST_INCONCLUSIVE,
    ),
    Row(
        "self-test hung while NATS was away -> failed, not blamed",
        S.VERIFYING,
        ev.SelfTestTimedOut(upgrade_id=U1, control_plane_lost=True),
        S.FAILED,
        ("CancelWork", "CleanupStaging", "WriteStatus"),
        P.FAILED,
        ErrorCode.SELF_TEST_INCONCLUSIVE,
    ),
    Row(
        "self-test hung -> failed, blamed",
        S.VERIFYING,
        ev.SelfTestTimedOut(upgrade_id=U1),
        S.FAILED,
        ("CancelWork", "CleanupStaging", "RememberFailedVersion", "WriteStatus"),
        P.FAILED,
        ErrorCode.SELF_TEST_TIMEOUT,
    ),
    Row(
        "candidate started -> armed",
        S.STARTING,
        ev.CandidateStarted(upgrade_id=U1),
        S.CUTOVER_READY,
        ("WriteStatus", "ScheduleTimer"),
        P.CUTOVER_READY,
    ),
    Row(
        "candidate failed to start -> revert",
        S.STARTING,
        ev.CandidateStartFailed(upgrade_id=U1, detail="systemd-run: no"),
        S.ROLLING_BACK,
        ("PersistInFlight", "Revert"),
    ),
    Row(
        "candidate died while starting -> revert",
        S.STARTING,
        ev.CandidateExited(upgrade_id=U1, exit_code=1),
        S.ROLLING_BACK,
        ("Revert",),
    ),
    Row(
        "candidate heartbeat -> holding",
        S.CUTOVER_READY,
        hb(),
        S.HOLDING,
        ("CancelTimer", "ScheduleTimer", "WriteStatus"),
        P.HOLDING,
    ),
    Row(
        "silence -> revert",
        S.CUTOVER_READY,
        ev.CutoverTimeout(upgrade_id=U1),
        S.ROLLING_BACK,
        ("CancelTimer", "PersistInFlight", "Revert"),
    ),
    Row(
        "candidate exit in cutover -> revert",
        S.CUTOVER_READY,
        ev.CandidateExited(upgrade_id=U1, exit_code=2, log_tail=("panic",)),
        S.ROLLING_BACK,
        ("Revert",),
    ),
    Row(
        "stop in cutover -> commit",
        S.CUTOVER_READY,
        stop(),
        S.COMMITTING,
        ("CancelTimer", "PersistInFlight", "SwapCurrent"),
    ),
    Row(
        "stop while holding -> commit",
        S.HOLDING,
        stop(),
        S.COMMITTING,
        ("CancelTimer", "PersistInFlight", "SwapCurrent"),
    ),
    Row(
        "hold deadline -> revert",
        S.HOLDING,
        ev.HoldTimeout(upgrade_id=U1),
        S.ROLLING_BACK,
        ("Revert",),
    ),
    Row(
        "candidate exit while holding -> revert",
        S.HOLDING,
        ev.CandidateExited(upgrade_id=U1, exit_code=137),
        S.ROLLING_BACK,
        ("Revert",),
    ),
    Row(
        "swap done -> committed, reply, hand over",
        S.COMMITTING,
        ev.CommitDone(upgrade_id=U1),
        S.COMMITTED,
        ("PersistInFlight", "WriteStatus", "RecordFinished", "ReplyToStop", "HandOver"),
        P.COMMITTED,
    ),
    Row(
        "swap failed -> revert, refuse the stop",
        S.COMMITTING,
        ev.CommitFailed(upgrade_id=U1, detail="EIO"),
        S.ROLLING_BACK,
        ("ReplyToStop", "PersistInFlight", "Revert"),
    ),
    Row(
        "revert done -> rolled back",
        S.ROLLING_BACK,
        ev.RevertDone(upgrade_id=U1),
        S.ROLLED_BACK,
        ("PersistInFlight", "RecordFinished", "WriteStatus"),
        P.ROLLED_BACK,
        ErrorCode.CUTOVER_TIMEOUT,
    ),
    Row(
        "revert failed -> failed",
        S.ROLLING_BACK,
        ev.RevertFailed(upgrade_id=U1, detail="EROFS"),
        S.FAILED,
        ("RecordFinished", "WriteStatus"),
        P.FAILED,
        ErrorCode.REVERT_FAILED,
    ),
    Row(
        "new marker after rollback starts",
        S.ROLLED_BACK,
        seen(marker(U2, "3.0")),
        S.STAGING,
        ("Stage",),
        P.STAGING,
    ),
    Row(
        "new marker after failure starts",
        S.FAILED,
        seen(marker(U2, "3.0")),
        S.STAGING,
        ("Stage",),
        P.STAGING,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_transition(row: Row) -> None:
    before = at(row.start)
    after, effects = step(before, row.event)
    assert after.state is row.end
    assert after.armed_for == (U1 if row.end in (S.CUTOVER_READY, S.HOLDING) else None)
    assert _subsequence(row.effects, kinds(effects)), kinds(effects)
    written = statuses(effects)
    if row.phase is not None:
        assert written, "a status must be written"
        assert written[-1].phase is row.phase
    if row.code is not None:
        assert written[-1].error_code is row.code


def test_every_declared_target_is_covered_by_a_row_or_a_dedicated_test() -> None:
    covered = {(r.start, r.end) for r in ROWS}
    covered |= {(r.before().state, r.end) for r in WATCH_ROWS}  # test_watch.py
    # Reached through dedicated tests below / in test_restart.py / test_acceptance.py.
    covered |= {
        (S.IDLE, S.FAILED),
        (S.IDLE, S.IDLE),
        (S.STAGING, S.FAILED),
        (S.VERIFYING, S.FAILED),
        (S.STARTING, S.HOLDING),
        (S.IDLE, S.ROLLING_BACK),
        (S.IDLE, S.COMMITTED),
        (S.IDLE, S.ROLLED_BACK),
        (S.IDLE, S.STAGING),
        (S.COMMITTED, S.STAGING),
        (S.COMMITTED, S.IDLE),
        (S.COMMITTED, S.FAILED),
        (S.ROLLED_BACK, S.IDLE),
        (S.ROLLED_BACK, S.FAILED),
        (S.FAILED, S.IDLE),
        (S.FAILED, S.FAILED),
        (S.STAGING, S.SUPERSEDED),  # test_acceptance.py
        (S.VERIFYING, S.SUPERSEDED),
        (S.IDLE, S.SUPERSEDED),  # test_restart.py
        (S.SUPERSEDED, S.IDLE),  # below
        (S.SUPERSEDED, S.STAGING),
        (S.SUPERSEDED, S.FAILED),
    }
    declared = {(s, t) for s, rules in TABLE.items() for r in rules.values() for t in r.targets}
    assert declared - covered == set()


# --- details the rows do not show ---------------------------------------------------------


def test_status_while_staging_carries_versions_and_attempt() -> None:
    _, effects = step(at(S.IDLE), seen())
    (status,) = statuses(effects)
    assert (status.upgrade.from_version, status.upgrade.target, status.upgrade.attempt) == (
        OLD,
        NEW,
        1,
    )
    assert status.upgrade.started_at == 10.0


def test_timers_use_the_markers_timeouts() -> None:
    _, effects = step(at(S.IDLE), seen())
    (timer,) = only(effects, fx.ScheduleTimer)
    assert timer == fx.ScheduleTimer(kind=TimerKind.STAGING, delay_s=100.0, upgrade_id=U1)
    _, effects = step(at(S.STARTING), ev.CandidateStarted(upgrade_id=U1))
    (timer,) = only(effects, fx.ScheduleTimer)
    assert (timer.kind, timer.delay_s) == (TimerKind.CUTOVER, 30.0)
    _, effects = step(at(S.CUTOVER_READY), hb())
    (timer,) = only(effects, fx.ScheduleTimer)
    assert (timer.kind, timer.delay_s) == (TimerKind.HOLD, 60.0)


def test_self_test_timer_allows_a_grace_beyond_the_executor_timeout() -> None:
    _, effects = step(at(S.STAGING), ev.StagingDone(upgrade_id=U1))
    (run,) = only(effects, fx.RunSelfTest)
    (timer,) = only(effects, fx.ScheduleTimer)
    assert run.timeout_s == 10.0
    assert timer.delay_s > run.timeout_s


def test_heartbeat_seen_before_started_goes_straight_to_holding() -> None:
    snap, _ = step(at(S.STARTING), hb())
    assert snap.state is S.STARTING and snap.upgrade.candidate_instance_id == CAND
    snap, effects = step(snap, ev.CandidateStarted(upgrade_id=U1))
    assert snap.state is S.HOLDING
    assert snap.armed_for == U1
    assert statuses(effects)[-1].phase is P.HOLDING


@pytest.mark.parametrize(
    "heartbeat",
    [hb(instance=OWN), hb(version=OLD), hb(uid=U2), hb(instance=OTHER, version=OLD)],
    ids=["own-instance", "old-version", "other-upgrade", "stranger-old-version"],
)
def test_heartbeats_that_are_not_our_candidate_change_nothing(heartbeat: ev.Event) -> None:
    before = at(S.CUTOVER_READY)
    assert step(before, heartbeat) == (before, ())


def test_candidate_heartbeat_without_upgrade_id_counts() -> None:
    snap, _ = step(at(S.CUTOVER_READY), hb(uid=None))
    assert snap.state is S.HOLDING


def test_commit_effects_put_status_before_reply_before_hand_over() -> None:
    _, effects = step(at(S.COMMITTING), ev.CommitDone(upgrade_id=U1))
    names = kinds(effects)
    assert names.index("WriteStatus") < names.index("ReplyToStop") < names.index("HandOver")
    assert names.index("RecordFinished") < names.index("HandOver")
    (reply,) = only(effects, fx.ReplyToStop)
    assert reply == fx.ReplyToStop(command_id="c1", code=ReplyCode.OK, message="committed")


def test_swap_targets_the_marker_version_and_carries_the_watch() -> None:
    _, effects = step(at(S.HOLDING), stop())
    (swap,) = only(effects, fx.SwapCurrent)
    plan = fx.WatchPlan(
        upgrade_id=U1,
        previous=OLD,
        target=NEW,
        committed_at=COMMIT_AT,
        window_s=TIMEOUTS.watch_s,
        max_failures=TIMEOUTS.watch_max_failures,
    )
    assert swap == fx.SwapCurrent(upgrade_id=U1, version=NEW, watch=plan)


def test_revert_restores_the_version_the_upgrade_started_from() -> None:
    _, effects = step(at(S.CUTOVER_READY), ev.CutoverTimeout(upgrade_id=U1))
    (revert,) = only(effects, fx.Revert)
    assert revert == fx.Revert(upgrade_id=U1, previous=OLD, target=NEW)


def test_candidate_exit_keeps_exit_code_and_log_tail_for_the_status() -> None:
    snap, _ = step(
        at(S.HOLDING), ev.CandidateExited(upgrade_id=U1, exit_code=2, log_tail=("a", "b"))
    )
    _, effects = step(snap, ev.RevertDone(upgrade_id=U1))
    status = statuses(effects)[-1]
    assert status.phase is P.ROLLED_BACK
    assert status.error_code is ErrorCode.CANDIDATE_EXITED
    assert (status.upgrade.candidate_exit_code, status.upgrade.candidate_log_tail) == (
        2,
        ("a", "b"),
    )
    assert status.upgrade.candidate_instance_id == CAND
    assert only(effects, fx.RememberFailedVersion) == [fx.RememberFailedVersion(version=NEW)]


@pytest.mark.parametrize(
    "event",
    [ev.CutoverTimeout(upgrade_id=U1), ev.HoldTimeout(upgrade_id=U1)],
    ids=["cutover", "hold"],
)
def test_waiting_for_the_operator_never_blames_the_version(event: ev.Event) -> None:
    start = S.CUTOVER_READY if isinstance(event, ev.CutoverTimeout) else S.HOLDING
    snap, _ = step(at(start), event)
    snap, effects = step(snap, ev.RevertDone(upgrade_id=U1))
    assert only(effects, fx.RememberFailedVersion) == []
    assert NEW not in snap.memory.failed_versions


def test_staging_failures_never_blame_the_version() -> None:
    snap, effects = step(
        at(S.STAGING), ev.StagingFailed(upgrade_id=U1, code=ErrorCode.INTEGRITY, detail="x")
    )
    assert only(effects, fx.RememberFailedVersion) == []
    assert NEW not in snap.memory.failed_versions


def test_candidate_exit_during_commit_is_recorded_and_commit_goes_on() -> None:
    snap, effects = step(at(S.COMMITTING), ev.CandidateExited(upgrade_id=U1, exit_code=9))
    assert snap.state is S.COMMITTING and effects == ()
    assert snap.upgrade.candidate_exit_code == 9


# --- stops ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state", [S.IDLE, S.STAGING, S.VERIFYING, S.STARTING, S.ROLLING_BACK, S.ROLLED_BACK, S.FAILED]
)
def test_stop_while_unarmed_is_refused_and_changes_nothing(state: S) -> None:
    before = at(state)
    after, effects = step(before, stop())
    assert after == before
    (reply,) = effects
    assert isinstance(reply, fx.ReplyToStop) and reply.code is ReplyCode.NOT_ARMED


@pytest.mark.parametrize("state", [S.CUTOVER_READY, S.HOLDING])
def test_stop_for_another_upgrade_is_refused_and_changes_nothing(state: S) -> None:
    before = at(state)
    after, effects = step(before, stop(U2))
    assert after == before
    (reply,) = effects
    assert isinstance(reply, fx.ReplyToStop) and reply.code is ReplyCode.WRONG_UPGRADE


def test_duplicate_stop_during_commit_is_answered_with_the_commit() -> None:
    snap, effects = step(at(S.COMMITTING), stop(cmd="c2"))
    assert effects == ()
    snap, again = step(snap, stop(cmd="c2"))
    assert again == () and snap.stop_commands == ("c1", "c2")
    _, effects = step(snap, ev.CommitDone(upgrade_id=U1))
    assert [r.command_id for r in only(effects, fx.ReplyToStop)] == ["c1", "c2"]


def test_stop_after_commit_is_acknowledged_again_without_a_second_swap() -> None:
    snap, effects = step(at(S.COMMITTED), stop(cmd="c9"))
    assert snap == at(S.COMMITTED)
    (reply,) = effects
    assert isinstance(reply, fx.ReplyToStop) and reply.code is ReplyCode.OK


def test_failed_commit_refuses_every_waiting_stop() -> None:
    snap, _ = step(at(S.COMMITTING), stop(cmd="c2"))
    _, effects = step(snap, ev.CommitFailed(upgrade_id=U1, detail="EIO"))
    assert {(r.command_id, r.code) for r in only(effects, fx.ReplyToStop)} == {
        ("c1", ReplyCode.ERROR),
        ("c2", ReplyCode.ERROR),
    }


# --- the table itself -------------------------------------------------------------------------


def test_every_state_answers_every_stop() -> None:
    assert all(ev.StopReceived in rules for rules in TABLE.values())


def test_every_state_accepts_markers_heartbeats_and_timers() -> None:
    for rules in TABLE.values():
        for t in (ev.MarkerSeen, ev.CandidateHeartbeatSeen, ev.CutoverTimeout, ev.HoldTimeout):
            assert t in rules


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.IDLE, ev.CommitDone(upgrade_id=U1)),
        (S.STAGING, ev.RevertDone(upgrade_id=U1)),
        (S.HOLDING, ev.AgentRestarted(record=None, current_version=OLD)),
        (S.VERIFYING, ev.CandidateStarted(upgrade_id=U1)),
    ],
)
def test_an_event_with_no_entry_is_a_protocol_violation_naming_both(
    state: S, event: ev.Event
) -> None:
    with pytest.raises(ProtocolViolation) as info:
        step(at(state), event)
    assert state.value in str(info.value) and type(event).__name__ in str(info.value)
    assert info.value.state is state


@pytest.mark.parametrize("state", list(S))
def test_events_of_another_upgrade_never_move_the_machine(state: S) -> None:
    before = at(state)
    for event in (
        ev.StagingDone(upgrade_id=U2),
        ev.SelfTestPassed(upgrade_id=U2),
        ev.CandidateStarted(upgrade_id=U2),
        ev.CandidateExited(upgrade_id=U2, exit_code=1),
        ev.CutoverTimeout(upgrade_id=U2),
        ev.HoldTimeout(upgrade_id=U2),
        ev.CommitDone(upgrade_id=U2),
        ev.RevertDone(upgrade_id=U2),
    ):
        try:
            after, effects = step(before, event)
        except ProtocolViolation:
            continue
        assert (after, effects) == (before, ()), (state, event)


@pytest.mark.parametrize(
    ("m", "end"),
    [
        (marker("u3", "4.0.0"), S.STAGING),
        (marker("u3", OLD), S.IDLE),
        (marker("u3", "5.0"), S.FAILED),
    ],
    ids=["a new version", "the running version", "a version on the skip list"],
)
def test_a_superseded_upgrade_is_at_rest_for_the_next_marker(m: UpgradeMarker, end: S) -> None:
    snap = at(S.SUPERSEDED)
    assert snap.upgrade_id == U1 and snap.upgrade.superseded_by == U2
    snap = replace(snap, memory=replace(snap.memory, failed_versions=frozenset({Version("5.0")})))
    after, _ = step(snap, seen(m, at=30.0))
    assert after.state is end and after.upgrade_id == "u3"


@pytest.mark.parametrize(
    "event",
    [
        ev.SelfTestFailed(upgrade_id=U1, exit_code=1, control_plane_lost=True),
        ev.SelfTestFailed(upgrade_id=U1, exit_code=SELF_TEST_UNAVAILABLE_EXIT),
        ev.SelfTestTimedOut(upgrade_id=U1, control_plane_lost=True),
    ],
    ids=["failed, agent lost NATS", "failed, self-test lost NATS", "hung, agent lost NATS"],
)
def test_a_nats_outage_during_the_self_test_never_blames_the_version(event: ev.Event) -> None:
    snap, effects = step(at(S.VERIFYING), event)
    assert only(effects, fx.RememberFailedVersion) == []
    assert NEW not in snap.memory.failed_versions
