"""The operator lease's decisions (core.lease): who may take it, when, with which epoch, and how
long its holder trusts it. Clocks are plain numbers: each process's own monotonic clock."""

from __future__ import annotations

from harmony_fleet.contracts.lease import OperatorLease
from harmony_fleet.core.lease import SAFETY, Action, Holding, Observed, decide, next_lease


def _lease(holder: str, epoch: int = 4, ttl: float = 2.0) -> OperatorLease:
    return OperatorLease(holder=holder, epoch=epoch, ttl_s=ttl, renewed_at=1e9)


def test_no_lease_is_created_with_epoch_1() -> None:
    assert decide("a", None, 100.0) is Action.CREATE
    assert next_lease("a", None, Action.CREATE, 2.0, 5.0).epoch == 1


def test_the_holder_renews_with_the_same_epoch() -> None:
    seen = Observed(_lease("a"), revision=9, first_seen=100.0)
    assert next_lease("a", seen, Action.RENEW, 2.0, 5.0).epoch == 4


def test_a_restart_of_the_holder_takes_its_lease_back_at_once_with_the_next_epoch() -> None:
    seen = Observed(_lease("a"), revision=9, first_seen=100.0)
    assert decide("a", seen, 100.0) is Action.TAKE_OVER
    assert next_lease("a", seen, Action.TAKE_OVER, 2.0, 5.0).epoch == 5


def test_a_standby_waits_a_whole_ttl_of_its_own_clock_on_one_revision() -> None:
    seen = Observed(_lease("b"), revision=9, first_seen=100.0)
    assert decide("a", seen, 101.99) is Action.WAIT
    assert decide("a", seen, 102.0) is Action.TAKE_OVER
    assert next_lease("a", seen, Action.TAKE_OVER, 2.0, 5.0) == OperatorLease(
        holder="a", epoch=5, ttl_s=2.0, renewed_at=5.0
    )


def test_a_new_revision_restarts_the_standbys_clock_but_the_same_one_does_not() -> None:
    seen = Observed(_lease("b"), revision=9, first_seen=100.0)
    assert seen.seen(_lease("b"), 9, 101.5) is seen
    renewed = seen.seen(_lease("b"), 10, 101.5)
    assert renewed.first_seen == 101.5
    assert decide("a", renewed, 103.0) is Action.WAIT


def test_the_holders_wall_clock_is_never_compared() -> None:
    ancient = OperatorLease(holder="b", epoch=2, ttl_s=2.0, renewed_at=0.0)
    assert decide("a", Observed(ancient, 3, first_seen=100.0), 100.5) is Action.WAIT


def test_a_released_lease_is_taken_at_once() -> None:
    released = OperatorLease(holder="", epoch=6, ttl_s=2.0)
    seen = Observed(released, revision=12, first_seen=100.0)
    assert decide("a", seen, 100.0) is Action.TAKE_OVER
    assert next_lease("a", seen, Action.TAKE_OVER, 2.0, 5.0).epoch == 7


def test_the_holder_trusts_its_lease_for_less_than_a_ttl_after_it_sent_the_renewal() -> None:
    holding = Holding(epoch=4, revision=9, sent_at=100.0, ttl_s=2.0)
    assert holding.valid(100.0 + 2.0 * SAFETY - 0.01)
    assert not holding.valid(100.0 + 2.0 * SAFETY)
    # A standby that saw the renewal land (at >= 100.0) takes over at >= 102.0: later.
    assert holding.valid_until < 100.0 + 2.0
