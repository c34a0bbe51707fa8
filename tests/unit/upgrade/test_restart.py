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
from harmony_fleet.core.upgrade.states import MAX_ATTEMPTS, ErrorCode

from .support import NEW, OLD, U1, S, fresh, kinds, marker, only, statuses


def record(state: S, **changes: object) -> InFlight:
    base = InFlight(marker=marker(), from_version=OLD, state=state, started_at=10.0)
    return replace(base, **changes)  # type: ignore[arg-type]


def restart(
    state: S | None, *, running: Version = OLD, current: Version = OLD, **changes: object
) -> tuple[Snapshot, tuple[fx.Effect, ...]]:
    rec = record(state, **changes) if state is not None else None
    return step(fresh(running=running), ev.AgentRestarted(record=rec, current_version=current))


def test_nothing_in_flight_stays_idle() -> None:
    snap, effects = restart(None)
    assert snap.state is S.IDLE and effects == ()


@pytest.mark.parametrize("state", [S.STAGING, S.VERIFYING])
def test_interrupted_staging_resumes_with_the_next_attempt(state: S) -> None:
    snap, effects = restart(state)
    assert snap.state is S.STAGING and snap.attempt == 2
    assert "Stage" in kinds(effects)
    assert statuses(effects)[-1].attempt == 2


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
    assert status.error_code is ErrorCode.CANDIDATE_EXITED and status.candidate_exit_code == 3


def test_old_agent_restarted_mid_commit_before_the_swap_reverts() -> None:
    snap, _ = restart(S.COMMITTING, current=OLD)
    assert snap.state is S.ROLLING_BACK


def test_new_main_after_a_swap_completes_the_commit_and_stops_the_candidate() -> None:
    for state in (S.COMMITTING, S.COMMITTED):
        snap, effects = restart(state, running=NEW, current=NEW)
        assert snap.state is S.COMMITTED
        names = kinds(effects)
        assert names[0] == "StopCandidate" and "HandOver" not in names
        assert statuses(effects)[-1].phase is P.COMMITTED
        assert only(effects, fx.PersistInFlight) == [fx.PersistInFlight(record=None)]
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


def test_a_new_main_accepts_the_next_marker() -> None:
    snap, _ = restart(S.COMMITTED, running=NEW, current=NEW)
    snap, _ = step(snap, ev.MarkerSeen(marker=marker("u2", "3.0.0"), seen_at=1.0))
    assert snap.state is S.STAGING and snap.from_version == NEW


def test_restart_never_reruns_the_upgrade_the_record_names_as_finished() -> None:
    snap, _ = restart(S.COMMITTED, running=NEW, current=NEW)
    assert step(snap, ev.MarkerSeen(marker=marker(), seen_at=2.0)) == (snap, ())
