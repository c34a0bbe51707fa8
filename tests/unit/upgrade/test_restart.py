"""A fresh agent process finishing or reverting what the last one left (invariant 2)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harmony_fleet.contracts.ids import Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.machine import step
from harmony_fleet.core.upgrade.records import InFlight
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import MAX_ATTEMPTS, WATCH_SETTLE_S, ErrorCode

from .support import NEW, OLD, U1, S, at, fresh, kinds, marker, only, statuses


def record(state: S, **changes: object) -> InFlight:
    base = InFlight(marker=marker(), from_version=OLD, state=state, started_at=10.0)
    return replace(base, **changes)  # type: ignore[arg-type]


def restart(
    state: S | None,
    *,
    running: Version = OLD,
    current: Version = OLD,
    since_commit_s: float | None = None,
    **changes: object,
) -> tuple[Snapshot, tuple[fx.Effect, ...]]:
    rec = record(state, **changes) if state is not None else None
    return step(
        fresh(running=running),
        ev.AgentRestarted(record=rec, current_version=current, since_commit_s=since_commit_s),
    )


def test_nothing_in_flight_stays_idle() -> None:
    snap, effects = restart(None)
    assert snap.state is S.IDLE and effects == ()


@pytest.mark.parametrize("state", [S.STAGING, S.VERIFYING])
def test_interrupted_staging_resumes_with_the_next_attempt(state: S) -> None:
    snap, effects = restart(state)
    assert snap.state is S.STAGING and snap.upgrade.attempt == 2
    assert "Stage" in kinds(effects)
    assert statuses(effects)[-1].upgrade.attempt == 2


def test_staging_interrupted_too_often_fails_without_blame() -> None:
    snap, effects = restart(S.STAGING, attempt=MAX_ATTEMPTS)
    assert snap.state is S.FAILED
    assert statuses(effects)[-1].error_code is ErrorCode.TOO_MANY_ATTEMPTS
    assert only(effects, fx.RememberFailedVersion) == []
    assert "CleanupStaging" in kinds(effects)


@pytest.mark.parametrize("state", [S.STARTING, S.CUTOVER_READY, S.HOLDING])
def test_restart_with_a_candidate_around_reverts(state: S) -> None:
    snap, effects = restart(state)
    assert snap.state is S.ROLLING_BACK
    (revert,) = only(effects, fx.Revert)
    assert revert == fx.Revert(upgrade_id=U1, previous=OLD, target=NEW)
    snap, effects = step(snap, ev.RevertDone(upgrade_id=U1))
    status = statuses(effects)[-1]
    assert status.phase is P.ROLLED_BACK and status.error_code is ErrorCode.AGENT_RESTARTED


def test_restart_during_rollback_finishes_it_and_keeps_the_reason() -> None:
    snap, effects = restart(
        S.ROLLING_BACK, error_code=ErrorCode.CANDIDATE_EXITED, candidate_exit_code=3
    )
    assert snap.state is S.ROLLING_BACK
    snap, effects = step(snap, ev.RevertDone(upgrade_id=U1))
    status = statuses(effects)[-1]
    assert (
        status.error_code is ErrorCode.CANDIDATE_EXITED and status.upgrade.candidate_exit_code == 3
    )


def test_old_agent_restarted_mid_commit_before_the_swap_reverts() -> None:
    snap, _ = restart(S.COMMITTING, current=OLD)
    assert snap.state is S.ROLLING_BACK


def test_new_main_after_a_swap_completes_the_commit_and_watches() -> None:
    for state in (S.COMMITTING, S.COMMITTED):
        snap, effects = restart(
            state, running=NEW, current=NEW, committed_at=100.0, since_commit_s=30.0
        )
        assert snap.state is S.WATCHING
        names = kinds(effects)
        assert names[0] == "StopCandidate" and "HandOver" not in names
        status = statuses(effects)[-1]
        assert status.phase is P.COMMITTED and status.watch_until == 700.0
        # Kept (in Watching), so a restart inside the window knows it is still on probation.
        (persisted,) = only(effects, fx.PersistInFlight)
        assert persisted.record is not None and persisted.record.state is S.WATCHING
        (timer,) = only(effects, fx.ScheduleTimer)
        assert timer.delay_s == 570.0 + WATCH_SETTLE_S
        assert U1 in snap.memory.finished


def test_old_agent_restarted_after_the_swap_hands_over_again() -> None:
    snap, effects = restart(S.COMMITTING, running=OLD, current=NEW)
    assert snap.state is S.COMMITTED
    assert kinds(effects)[-1] == "HandOver"
    assert "SwapCurrent" not in kinds(effects)


def test_committed_but_current_reverted_reports_the_truth() -> None:
    snap, effects = restart(S.COMMITTED, running=OLD, current=OLD)
    assert snap.state is S.ROLLED_BACK
    assert statuses(effects)[-1].error_code is ErrorCode.LAYOUT_INCONSISTENT


def test_a_new_main_takes_the_next_marker_once_its_watch_window_passed() -> None:
    snap, _ = restart(S.COMMITTED, running=NEW, current=NEW)
    snap, effects = step(snap, ev.MarkerSeen(marker=marker("u2", "3.0.0"), seen_at=1.0))
    assert snap.state is S.WATCHING and "Stage" not in kinds(effects)
    assert statuses(effects)[-1].pending_upgrade_id == "u2"
    snap, effects = step(snap, ev.WatchPassed(upgrade_id=U1))
    assert snap.state is S.SUCCEEDED
    (resubmit,) = only(effects, fx.Resubmit)
    snap, _ = step(snap, resubmit.event)
    assert snap.state is S.STAGING and snap.upgrade.from_version == NEW


def test_restart_never_reruns_the_upgrade_the_record_names_as_finished() -> None:
    snap, _ = restart(S.COMMITTED, running=NEW, current=NEW)
    assert step(snap, ev.MarkerSeen(marker=marker(), seen_at=2.0)) == (snap, ())


@pytest.mark.parametrize(
    ("state", "code", "phase"),
    [
        (S.FAILED, ErrorCode.SELF_TEST_FAILED, P.FAILED),
        (S.ROLLED_BACK, ErrorCode.CUTOVER_TIMEOUT, P.ROLLED_BACK),
        (S.SUPERSEDED, ErrorCode.SUPERSEDED, P.SUPERSEDED),
    ],
)
def test_an_ended_upgrade_is_reasserted_never_resumed(state: S, code: ErrorCode, phase: P) -> None:
    snap, effects = restart(state, error_code=code)
    assert snap.state is state
    assert "Stage" not in kinds(effects) and "Revert" not in kinds(effects)
    status = statuses(effects)[-1]
    assert (status.phase, status.error_code) == (phase, code)
    assert U1 in snap.memory.finished
    blamed = only(effects, fx.RememberFailedVersion)
    assert blamed == (
        [fx.RememberFailedVersion(version=NEW)] if code is ErrorCode.SELF_TEST_FAILED else []
    )


def test_a_record_of_a_finished_upgrade_never_reruns_it() -> None:
    rec = record(S.STAGING)
    snap = replace(fresh(), memory=replace(fresh().memory, finished=(U1,)))
    snap, effects = step(snap, ev.AgentRestarted(record=rec, current_version=OLD))
    assert snap.state is S.FAILED and "Stage" not in kinds(effects)


def test_a_restart_event_is_only_meaningful_as_the_first_event_of_a_process() -> None:
    snap, _ = step(fresh(), ev.MarkerSeen(marker=marker(U1, OLD), seen_at=1.0))
    assert snap.state is S.IDLE and snap.marker is not None
    again = step(snap, ev.AgentRestarted(record=record(S.STAGING), current_version=OLD))
    assert again == (snap, ())


def test_the_end_of_an_upgrade_is_ordered_to_survive_a_crash_between_effects() -> None:
    snap = at(S.ROLLING_BACK)
    _, effects = step(snap, ev.RevertDone(upgrade_id=U1))
    names = kinds(effects)
    assert names[:3] == ["PersistInFlight", "RecordFinished", "WriteStatus"]
    (persisted,) = only(effects, fx.PersistInFlight)
    assert isinstance(persisted, fx.PersistInFlight) and persisted.record is not None
    assert persisted.record.state is S.ROLLED_BACK
