"""The marker rule: replays, duplicates, newer markers in flight, nothing to do, skip list."""

from __future__ import annotations

import pytest

from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.acceptance import Verdict, judge
from harmony_fleet.core.upgrade.machine import step
from harmony_fleet.core.upgrade.states import ErrorCode

from .support import NEW, OLD, U1, U2, S, at, fresh, kinds, marker, only, run, seen, statuses

M2 = marker(U2, "3.0.0")


def test_a_finished_upgrade_id_is_never_run_again() -> None:
    snap = fresh(finished=[U1])
    assert judge(snap, marker()) is Verdict.REPLAY
    assert step(snap, seen()) == (snap, ())


@pytest.mark.parametrize("state", [S.COMMITTED, S.ROLLED_BACK, S.FAILED])
def test_a_replay_after_the_end_is_ignored(state: S) -> None:
    snap = at(state)
    assert step(snap, seen(at=99.0)) == (snap, ())


@pytest.mark.parametrize(
    "state", [S.STAGING, S.VERIFYING, S.STARTING, S.CUTOVER_READY, S.HOLDING, S.COMMITTING]
)
def test_the_same_upgrade_id_in_flight_is_a_no_op(state: S) -> None:
    snap = at(state)
    assert judge(snap, marker()) is Verdict.DUPLICATE
    assert step(snap, seen(at=99.0)) == (snap, ())


def test_target_equal_to_running_version_succeeds_at_once() -> None:
    snap, effects = step(fresh(), seen(marker(U1, OLD)))
    assert snap.state is S.IDLE
    (status,) = statuses(effects)
    assert status.phase is P.SUCCEEDED and status.error_code is ErrorCode.ALREADY_RUNNING
    assert "Stage" not in kinds(effects)
    assert U1 in snap.memory.finished


def test_a_version_that_failed_here_is_refused() -> None:
    snap, effects = step(fresh(failed=[NEW]), seen())
    assert snap.state is S.FAILED
    (status,) = statuses(effects)
    assert status.phase is P.FAILED and status.error_code is ErrorCode.VERSION_FAILED_BEFORE
    assert "Stage" not in kinds(effects)


def test_force_overrides_the_skip_list() -> None:
    snap, effects = step(fresh(failed=[NEW]), seen(marker(force=True)))
    assert snap.state is S.STAGING
    assert "Stage" in kinds(effects)


def test_self_test_failure_puts_the_version_on_the_skip_list_for_the_next_marker() -> None:
    snap, _ = run(at(S.VERIFYING), [ev.SelfTestFailed(upgrade_id=U1, exit_code=1)])
    snap, effects = step(snap, seen(marker(U2, NEW)))
    assert snap.state is S.FAILED
    assert statuses(effects)[-1].error_code is ErrorCode.VERSION_FAILED_BEFORE


@pytest.mark.parametrize("state", [S.STAGING, S.VERIFYING])
def test_a_newer_marker_before_the_candidate_supersedes_the_current_one(state: S) -> None:
    snap, effects = step(at(state), seen(M2))
    assert snap.state is S.SUPERSEDED
    old_status = statuses(effects)[-1]
    assert old_status.upgrade_id == U1 and old_status.error_code is ErrorCode.SUPERSEDED
    assert old_status.phase is P.SUPERSEDED
    assert old_status.upgrade.superseded_by == U2
    assert old_status.pending_upgrade_id == U2
    assert kinds(effects)[0] == "CancelWork"
    assert only(effects, fx.RememberFailedVersion) == []
    (resubmit,) = only(effects, fx.Resubmit)
    assert isinstance(resubmit, fx.Resubmit) and resubmit.event.marker == M2
    # The resubmitted marker starts from rest.
    snap, effects = step(snap, resubmit.event)
    assert snap.state is S.STAGING and snap.upgrade_id == U2


@pytest.mark.parametrize("state", [S.STARTING, S.CUTOVER_READY, S.HOLDING, S.COMMITTING])
def test_a_newer_marker_once_a_candidate_may_exist_waits(state: S) -> None:
    before = at(state)
    snap, effects = step(before, seen(M2))
    assert snap.state is state and snap.upgrade_id == U1
    assert snap.pending is not None and snap.pending.marker == M2
    (status,) = statuses(effects)
    assert status.upgrade_id == U1 and status.pending_upgrade_id == U2
    assert step(snap, seen(M2)) == (snap, ())  # the same pending marker again: nothing


def test_the_waiting_marker_is_taken_up_after_the_rollback() -> None:
    snap, _ = step(at(S.HOLDING), seen(M2))
    snap, _ = step(snap, ev.HoldTimeout(upgrade_id=U1))
    snap, effects = step(snap, ev.RevertDone(upgrade_id=U1))
    assert snap.state is S.ROLLED_BACK and snap.pending is None
    (resubmit,) = only(effects, fx.Resubmit)
    assert isinstance(resubmit, fx.Resubmit)
    snap, _ = step(snap, resubmit.event)
    assert snap.state is S.STAGING and snap.upgrade_id == U2


def test_only_the_latest_waiting_marker_is_kept() -> None:
    m3 = marker("u3", "4.0.0")
    snap, _ = run(at(S.CUTOVER_READY), [seen(M2), seen(m3)])
    assert snap.pending is not None and snap.pending.marker == m3


def test_the_old_agent_handing_over_ignores_new_markers() -> None:
    snap = at(S.COMMITTED)
    assert judge(snap, M2) is Verdict.HANDING_OVER
    assert step(snap, seen(M2)) == (snap, ())


def test_a_marker_for_the_running_version_cancels_a_pending_download() -> None:
    snap, effects = step(at(S.STAGING), seen(marker(U2, OLD)))
    (resubmit,) = only(effects, fx.Resubmit)
    assert isinstance(resubmit, fx.Resubmit)
    snap, effects = step(snap, resubmit.event)
    assert snap.state is S.IDLE
    assert statuses(effects)[-1].phase is P.SUCCEEDED


def test_a_marker_waiting_behind_a_candidate_that_is_replaced_ends_as_superseded() -> None:
    m3 = marker("u3", "3.0.0")
    waiting, _ = step(at(S.CUTOVER_READY), seen(M2))
    snap, effects = step(waiting, seen(m3, at=20.0))
    assert snap.state is S.CUTOVER_READY and snap.upgrade_id == U1
    assert snap.pending is not None and snap.pending.marker == m3
    never, current = statuses(effects)
    assert never.upgrade_id == U2 and never.phase is P.SUPERSEDED
    assert never.upgrade.superseded_by == "u3" and never.error_code is ErrorCode.SUPERSEDED
    assert current.upgrade_id == U1 and current.pending_upgrade_id == "u3"
    assert fx.RecordFinished(upgrade_id=U2) in effects
    assert step(snap, seen(M2)) == (snap, ())  # it never comes back
