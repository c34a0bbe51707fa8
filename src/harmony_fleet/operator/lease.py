"""The operator lease in KV: one ``fleet operator`` process is active, the others wait (ADR-023).

:class:`LeaseKeeper` runs beside the operator. As a standby, :meth:`LeaseKeeper.acquire` reads
the lease key every ``ttl_s / 4`` and takes it (compare-and-set on the key's revision, epoch one
higher) once it has stayed at one revision for ``ttl_s`` on this process's clock, or at once
when its holder released it. As the holder, :meth:`LeaseKeeper.hold` renews it every
``ttl_s / 4`` (compare-and-set on the revision it wrote last); when a renewal finds the key
moved on, or no renewal has succeeded for ``0.75 x ttl_s``, the lease is lost (:attr:`lost`) and
the operator stops.

It is also the :class:`~harmony_fleet.adapters.nats.fence.Fence` of every write the operator
makes: :meth:`check` (on this process's clock, before every KV write) and :meth:`verify` (the
key on the server still at our revision, once per pass of writes and before every
``upgrade_stop``) raise :class:`~harmony_fleet.errors.Deposed`. :meth:`LeaseKeeper.open` is
given a connection of its own by the operator's runtime (``operator-lease``): on the one that
carries the heartbeats, a flood's backlog delayed renewals past the TTL. The pure decisions are
:mod:`harmony_fleet.core.lease`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import LEASE, FleetKV
from harmony_fleet.adapters.nats.kv import TypedKV, Undecodable
from harmony_fleet.contracts.lease import LEASE_KEY, OperatorLease
from harmony_fleet.core.lease import (
    RENEWALS_PER_TTL,
    SAFETY,
    Action,
    Holding,
    Observed,
    decide,
    next_lease,
)
from harmony_fleet.errors import Conflict, Deposed, FleetError, Unavailable

log = logging.getLogger(__name__)


def default_name() -> str:
    """This process's holder name: host, pid and a random suffix (unique per start)."""
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaseKeeper:
    def __init__(
        self,
        name: str,
        ttl_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.clock = clock
        self.wall = wall
        self.kv: TypedKV[OperatorLease] | None = None
        self.observed: Observed | None = None
        self.holding: Holding | None = None
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.refused = 0
        """Writes refused because the lease was not (surely) ours."""

    @property
    def poll_s(self) -> float:
        return self.ttl_s / RENEWALS_PER_TTL

    # -- the fence ---------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.holding.epoch if self.holding is not None else 0

    def check(self) -> None:
        if self.holding is None or not self.holding.valid(self.clock()):
            self.refused += 1
            raise Deposed(f"operator {self.name} does not hold the operator lease")

    async def verify(self) -> None:
        self.check()
        holding = self.holding  # the renewal loop may replace or drop it while we read
        assert self.kv is not None and holding is not None
        found = await self.kv.read(LEASE_KEY)
        revision = found.revision if found is not None else None
        if revision == holding.revision:
            return
        if revision is not None and revision < holding.revision:
            # A replica behind our own write (buckets allow direct gets, which any replica
            # answers: a follower just after a leader change). A takeover only ever moves the
            # key past our revision, so this says nothing either way: no write now, no loss.
            raise Unavailable(
                f"the lease read at revision {revision} is behind ours ({holding.revision}): "
                "a lagging replica answered; try again"
            )
        if (
            found is not None
            and not isinstance(found, Undecodable)
            and (found.value.holder, found.value.epoch) == (self.name, holding.epoch)
        ):
            # Our own renewal, which timed out here but landed: still ours. Adopt its revision
            # unless the renewal loop already has (the time it was sent is unknown: keep ours).
            if self.holding is holding:
                self.holding = Holding(holding.epoch, found.revision, holding.sent_at, self.ttl_s)
            return
        self._lose(f"the lease is at revision {revision}, we wrote {holding.revision}")
        self.refused += 1
        raise Deposed(f"operator {self.name} was deposed (lease taken over)")

    # -- standby and holder ------------------------------------------------------------------
    async def open(self, nc: NatsClient) -> None:
        self.kv = await FleetKV(nc).open(LEASE)  # unfenced: this is the fence

    async def _observe(self) -> Observed | None:
        assert self.kv is not None
        found = await self.kv.read(LEASE_KEY)
        now = self.clock()
        if found is None:
            self.observed = None
            return None
        lease = None if isinstance(found, Undecodable) else found.value
        if self.observed is None:
            self.observed = Observed(lease, found.revision, now)
        else:
            self.observed = self.observed.seen(lease, found.revision, now)
        if lease is None:  # unreadable: taken over after a TTL, epoch above any ever written
            filler = OperatorLease(holder="?", epoch=found.revision, ttl_s=self.ttl_s)
            self.observed = Observed(filler, found.revision, self.observed.first_seen)
        return self.observed

    async def _write(self, action: Action, observed: Observed | None) -> Holding:
        assert self.kv is not None
        value = next_lease(self.name, observed, action, self.ttl_s, self.wall())
        sent = self.clock()
        write = (
            self.kv.create(LEASE_KEY, value)
            if observed is None
            else self.kv.update(LEASE_KEY, value, last=observed.revision)
        )
        revision = await asyncio.wait_for(write, self.ttl_s * SAFETY)
        return Holding(value.epoch, revision, sent, self.ttl_s)

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until this process holds the lease; False if ``stop`` came first."""
        announced = False
        while not stop.is_set():
            try:
                observed = await self._observe()
                action = decide(self.name, observed, self.clock())
                if action is not Action.WAIT:
                    self.holding = await self._write(action, observed)
                    log.warning(
                        "operator lease taken: this operator is active",
                        extra={"holder": self.name, "epoch": self.holding.epoch},
                    )
                    return True
                if not announced and observed is not None and observed.lease is not None:
                    announced = True
                    log.info(
                        "standby: another operator holds the lease",
                        extra={"holder": observed.lease.holder, "epoch": observed.lease.epoch},
                    )
            except Conflict:
                continue  # another standby won, or the holder renewed: read again
            except (FleetError, TimeoutError) as exc:
                log.info("operator lease not reachable", extra={"error": str(exc)})
            await wait_event(stop, self.poll_s)
        return False

    async def hold(self, stop: asyncio.Event) -> None:
        """Renew the lease until ``stop``; set :attr:`lost` if it is lost."""
        while not stop.is_set() and not self.lost.is_set():
            await wait_event(stop, self.poll_s)
            if stop.is_set():
                return
            holding = self.holding
            if holding is None or not holding.valid(self.clock()):
                self._lose("no renewal succeeded in time")
                return
            observed = Observed(self._mine(holding), holding.revision, holding.sent_at)
            try:
                self.holding = await self._write(Action.RENEW, observed)
            except Conflict:
                if not await self._still_mine(holding):
                    self._lose("another operator took the lease over")
                    return
            except (FleetError, TimeoutError) as exc:  # outcome unknown: the next try tells
                log.warning("operator lease not renewed", extra={"error": str(exc)})

    def _mine(self, holding: Holding) -> OperatorLease:
        return OperatorLease(holder=self.name, epoch=holding.epoch, ttl_s=self.ttl_s)

    async def _still_mine(self, holding: Holding) -> bool:
        """After a conflict: was it our own renewal that landed though it timed out? Then adopt
        its revision (the time it was sent is unknown: keep the older one)."""
        with contextlib.suppress(FleetError):
            assert self.kv is not None
            found = await self.kv.read(LEASE_KEY)
            if (
                found is not None
                and not isinstance(found, Undecodable)
                and (found.value.holder, found.value.epoch) == (self.name, holding.epoch)
            ):
                self.holding = Holding(holding.epoch, found.revision, holding.sent_at, self.ttl_s)
                return True
        return False

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.holding = None
        self.lost.set()
        log.error("operator lease lost: this operator stops", extra={"reason": reason})

    async def release(self) -> None:
        """Hand the lease back on a clean stop, so a standby takes over at once."""
        holding, self.holding = self.holding, None
        if holding is None or not holding.valid(self.clock()) or self.kv is None:
            return
        value = OperatorLease(holder="", epoch=holding.epoch, ttl_s=self.ttl_s, renewed_at=0.0)
        with contextlib.suppress(FleetError, TimeoutError, Conflict):
            await asyncio.wait_for(self.kv.update(LEASE_KEY, value, last=holding.revision), 2.0)
            log.info("operator lease released", extra={"epoch": holding.epoch})
