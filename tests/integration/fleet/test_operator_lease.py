"""The operator lease against a real nats-server: one holder, a standby that takes over once the
holder stops renewing, and a deposed holder whose writes are refused (ADR-023).

The deposed side is tried two ways: by its own clock (it stopped renewing long enough ago), and
with a clock that says the lease is still fine (a process paused between its check and its
write): then the lease's revision on the server refuses it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, write_marker
from harmony_fleet.contracts import DeviceRecord, UpgradeMarker
from harmony_fleet.contracts.commands import Reply, ReplyCode
from harmony_fleet.contracts.lease import LEASE_KEY, OperatorLease
from harmony_fleet.core.lease import Holding
from harmony_fleet.errors import Deposed, Unavailable
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.lease import LeaseKeeper
from harmony_fleet.operator.registry import Registry

TTL = 1.0
DEV = "edge-1"


def _marker(uid: str = "u-1") -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=uid, device_id=DEV, target_version="2.0.0",
        artifact_url="https://artifacts.example/a.pyz", sha256="ab" * 32,
        requested_at=time.time(),
    )  # fmt: skip


def _record() -> DeviceRecord:
    now = time.time()
    return DeviceRecord(
        device_id=DEV, current_version="1.0.0", online=True, first_seen=now, last_seen=now
    )


async def _holder_and_standby(nc: NatsClient, stop: asyncio.Event) -> tuple[LeaseKeeper, ...]:
    a, b = LeaseKeeper("ops-a", TTL), LeaseKeeper("ops-b", TTL)
    await a.open(nc)
    await b.open(nc)
    assert await a.acquire(stop)
    assert a.epoch == 1
    return a, b


async def test_a_standby_takes_over_within_two_ttls_once_the_holder_stops_renewing(
    nc: NatsClient,
) -> None:
    stop = asyncio.Event()
    a, b = await _holder_and_standby(nc, stop)
    holding = asyncio.ensure_future(a.hold(stop))
    standby = asyncio.ensure_future(b.acquire(stop))
    try:
        with pytest.raises(TimeoutError):  # while the holder renews, the standby waits
            await asyncio.wait_for(asyncio.shield(standby), 3 * TTL)
        assert a.epoch == 1 and not a.lost.is_set()
        holding.cancel()  # the holder freezes: no more renewals
        frozen = time.monotonic()
        assert await asyncio.wait_for(standby, 10 * TTL)
        took = time.monotonic() - frozen
        print(f"takeover {took:.2f} s after the last renewal stopped (TTL {TTL} s)")
        assert took < 2 * TTL
        assert b.epoch == 2
    finally:
        stop.set()
        holding.cancel()
        standby.cancel()
        await asyncio.gather(holding, standby, return_exceptions=True)


async def test_a_deposed_operator_cannot_write_a_record_a_marker_or_send_a_stop(
    nc: NatsClient,
) -> None:
    stop = asyncio.Event()
    a, b = await _holder_and_standby(nc, stop)
    assert await asyncio.wait_for(b.acquire(stop), 10 * TTL)  # a never renewed: b took over
    assert b.epoch == 2

    deposed = FleetKV(nc, fence=a)
    with pytest.raises(Deposed):
        await (await deposed.devices()).put(DEV, _record())
    with pytest.raises(Deposed):
        await write_marker(deposed, _marker())
    with pytest.raises(Deposed):
        await a.verify()

    class Commands:
        calls: list[Any] = []

        async def upgrade_stop(self, *args: Any, **kwargs: Any) -> Reply:
            self.calls.append((args, kwargs))
            return Reply(command_id="c", ok=True, code=ReplyCode.OK)

    commands = Commands()
    for fence, expected_calls in ((a, 0), (b, 1)):
        coordinator = Coordinator(Registry(), fence=fence)
        coordinator.on_marker(_marker(), time.time())
        await coordinator._send_stop(commands, DEV, coordinator.tracked[DEV])  # type: ignore[arg-type]
        assert len(commands.calls) == expected_calls
    assert commands.calls[0][1]["lease_epoch"] == 2  # the stop carries the sender's epoch

    plain = FleetKV(nc)
    assert await (await plain.devices()).get(DEV) is None  # nothing of the deposed one landed
    await write_marker(FleetKV(nc, fence=b), _marker())
    stored = await (await plain.markers()).get(DEV)
    assert stored is not None and stored.value.lease_epoch == 2


async def test_a_holder_paused_between_its_check_and_its_write_is_refused_by_the_revision(
    nc: NatsClient,
) -> None:
    """Its own clock says the lease is fine (it was paused: no time passed for it), but the
    lease on the server was taken over: :meth:`LeaseKeeper.verify` refuses."""
    frozen_clock = [0.0]
    a = LeaseKeeper("ops-a", TTL, clock=lambda: frozen_clock[0])
    b = LeaseKeeper("ops-b", TTL)
    await a.open(nc)
    await b.open(nc)
    stop = asyncio.Event()
    assert await a.acquire(stop)
    assert await asyncio.wait_for(b.acquire(stop), 10 * TTL)
    a.check()  # by its own (stopped) clock it still holds the lease
    with pytest.raises(Deposed):
        await a.verify()
    assert a.lost.is_set()
    with pytest.raises(Deposed):
        a.check()  # and from then on, nothing more


async def test_a_renewal_that_timed_out_but_landed_does_not_depose_its_holder(
    nc: NatsClient,
) -> None:
    """A renewal's reply lost (a loaded server, a slow link) while its write landed: the key is
    one revision past what the holder knows, still with its name and epoch. That is no
    takeover (a lone operator used to exit 75 on it, mid-rollout); another name is."""
    stop = asyncio.Event()
    a, _ = await _holder_and_standby(nc, stop)
    assert a.kv is not None and a.holding is not None
    mine = OperatorLease(holder="ops-a", epoch=1, ttl_s=TTL)
    landed = await a.kv.update(LEASE_KEY, mine, last=a.holding.revision)

    await a.verify()
    assert not a.lost.is_set()
    assert a.holding is not None and a.holding.revision == landed

    other = OperatorLease(holder="ops-b", epoch=2, ttl_s=TTL)
    await a.kv.update(LEASE_KEY, other, last=landed)
    with pytest.raises(Deposed):
        await a.verify()
    assert a.lost.is_set()


async def test_a_lagging_replica_behind_the_holders_write_defers_it_and_deposes_nobody(
    nc: NatsClient,
) -> None:
    """In a cluster any replica answers a direct get: one just behind the holder's last renewal
    shows an older revision. A takeover only moves the key forward, so that read is no
    takeover: the write waits (a temporary error), the lease stays (chaos tier: an operator
    exited 75 on 'the lease is at revision 15, we wrote 16' after a stream leader was killed)."""
    stop = asyncio.Event()
    a, _ = await _holder_and_standby(nc, stop)
    assert a.kv is not None and a.holding is not None
    ahead = Holding(a.holding.epoch, a.holding.revision + 1, a.holding.sent_at, TTL)
    a.holding = ahead  # as if our next renewal landed on the leader and a follower answers

    with pytest.raises(Unavailable):
        await a.verify()
    assert not a.lost.is_set() and a.holding is ahead
