"""The operator lease's decisions, with no I/O (ADR-023).

Two clocks, neither shared: each process measures time on its own monotonic clock.

* A **standby** takes the lease over only once it has seen the lease key stay at one revision
  for ``ttl_s`` on its own clock (:class:`Observed` records when it first saw that revision), or
  at once when the holder released it, or when the holder has its own name (a restart of the
  same operator: the name promises one live process; the next epoch fences the old one).
  Wall-clock ``renewed_at`` is never compared: operators' clocks may disagree by minutes.
* The **holder** counts its lease from the moment it *sent* its last successful renewal
  (:meth:`Holding.valid_until`): a standby cannot have started counting before that write
  landed, so the holder stops writing at ``sent + ttl_s x SAFETY`` and a standby starts at
  ``seen + ttl_s`` at the earliest, later than the holder stopped as long as neither clock runs
  more than ``1 / SAFETY`` times faster than the other.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from harmony_fleet.contracts.lease import OperatorLease

log = logging.getLogger(__name__)

#: The share of the TTL a holder trusts its lease for after a successful renewal.
SAFETY = 0.75
#: Renewals per TTL (so two may fail in a row before the holder stops writing).
RENEWALS_PER_TTL = 4


class Action(enum.Enum):
    CREATE = "create"
    """No lease yet: create it (epoch 1)."""
    RENEW = "renew"
    """Ours (the holder's renewal loop): write it again at its revision (same epoch)."""
    TAKE_OVER = "take_over"
    """Another's, expired or released, or an earlier process's of our name: write it at its
    revision with the next epoch."""
    WAIT = "wait"
    """Another's and alive: stay a standby."""


@dataclass(frozen=True)
class Observed:
    """The lease key as one process last read it, and when (its monotonic clock) it first saw
    that revision."""

    lease: OperatorLease | None
    revision: int
    first_seen: float

    def seen(self, lease: OperatorLease | None, revision: int, now: float) -> Observed:
        """The next reading: the clock restarts only when the revision changed."""
        if revision == self.revision:
            return self
        return Observed(lease, revision, now)


def decide(me: str, observed: Observed | None, now: float) -> Action:
    """What process ``me``, not holding the lease yet, should do about the lease it observed
    (None: no key at all). The holder renews on its own schedule, without asking."""
    if observed is None or observed.lease is None:
        return Action.CREATE
    lease = observed.lease
    if lease.holder == me or lease.released or now - observed.first_seen >= lease.ttl_s:
        return Action.TAKE_OVER
    return Action.WAIT


def next_lease(
    me: str, observed: Observed | None, action: Action, ttl_s: float, wall: float
) -> OperatorLease:
    """The value to write for ``action`` (epoch kept on renewal, one more on a takeover)."""
    previous = observed.lease if observed is not None else None
    epoch = 1 if previous is None else previous.epoch + (0 if action is Action.RENEW else 1)
    return OperatorLease(holder=me, epoch=epoch, ttl_s=ttl_s, renewed_at=wall)


@dataclass(frozen=True)
class Holding:
    """The lease as its holder knows it: the epoch, the revision it wrote last, and when it sent
    that write (its monotonic clock)."""

    epoch: int
    revision: int
    sent_at: float
    ttl_s: float

    @property
    def valid_until(self) -> float:
        return self.sent_at + self.ttl_s * SAFETY

    def valid(self, now: float) -> bool:
        return now < self.valid_until
