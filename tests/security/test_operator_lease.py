"""The operator lease: only an operator (or the admin) writes it (ADR-023).

A device or a viewer that could write it would depose the active operator at will, or hold the
lease with no operator behind it, so that no operator writes a record, sends a stop or drives a
rollout. Each tries to take it (a plain write, a create of a fresh key, a delete, a purge) and
is refused; the lease stays the operator's. The control: the real operator took it with the
operator's credentials.
"""

from __future__ import annotations

import time
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import LEASE, FleetKV
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import encode
from harmony_fleet.contracts.lease import LEASE_KEY, OperatorLease
from harmony_fleet.operator.runtime import Operator
from tests.security.support import Attacker, attacker


async def _try_to_take(who: Attacker, what: str) -> None:
    evil = encode(OperatorLease(holder="evil", epoch=999, ttl_s=3600.0, renewed_at=time.time()))
    for subject, body in (
        (f"$KV.{LEASE.name}.{LEASE_KEY}", evil),
        (f"$KV.{LEASE.name}.other", evil),
        (f"$JS.API.STREAM.PURGE.KV_{LEASE.name}", b"{}"),
        (f"$JS.API.STREAM.MSG.DELETE.KV_{LEASE.name}", b'{"seq":1}'),
    ):
        await who.nc.publish(subject, body)
        await who.refused(subject, what=f"{what} writing the lease ({subject})")


async def test_neither_a_device_nor_a_viewer_can_take_the_operator_lease(
    operator: Operator,
    nats_server: EmbeddedNats,
    creds: dict[str, Path],
    device_a: Attacker,
    nc: NatsClient,
) -> None:
    lease = await (await FleetKV(nc).open(LEASE)).get(LEASE_KEY)
    assert lease is not None and lease.value.holder == operator.lease.name  # the control
    viewer = await attacker(nats_server, creds["viewer"])
    try:
        await _try_to_take(device_a, "a device")
        await _try_to_take(viewer, "a viewer")
    finally:
        await viewer.close()
    after = await (await FleetKV(nc).open(LEASE)).get(LEASE_KEY)
    assert after is not None and after.value.holder == operator.lease.name
    assert after.value.epoch == lease.value.epoch
    assert await (await FleetKV(nc).open(LEASE)).get("other") is None
    operator.lease.check()  # still the active operator
    await operator.lease.verify()


async def test_a_device_reads_the_lease_epoch_and_nothing_else_of_the_bucket(
    operator: Operator, device_a: Attacker, nc: NatsClient
) -> None:
    """Its agent refuses a deposed operator's stop by comparing epochs (ADR-023): it may read
    the lease's one key by direct get, no other key."""
    seen = await (await FleetKV(device_a.nc).open(LEASE)).get(LEASE_KEY)
    assert seen is not None and seen.value.epoch == operator.lease.epoch
    await (await FleetKV(nc).open(LEASE)).put("other", seen.value)
    other = f"$JS.API.DIRECT.GET.KV_{LEASE.name}.$KV.{LEASE.name}.other"
    await device_a.nc.publish(other, b"")
    await device_a.refused(other, what="a device reading another key of the lease bucket")
