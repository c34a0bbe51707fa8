"""A flood of heartbeats against a real nats-server: the operator sheds it with counters.

The operator's loop is made slow (an extension that blocks it in short bursts while the flood
lasts) and its pending budget tiny, so the flood outruns it: nats-py drops what does not fit
(a slow consumer) and the operator counts the drops; it keeps running, its pending bytes never
pass the limit, and it ingests again once the flood is over.

A flood of valid heartbeats from another process, longer than the lease's TTL, does not cost
the operator its lease: the lease has a connection of its own (ADR-023), so its renewals never
wait behind the heartbeats nats-server queues on the operator's main connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator

from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.adapters.nats.fleet_kv import LEASE, FleetKV
from harmony_fleet.adapters.nats.kv import Undecodable
from harmony_fleet.contracts import Heartbeat, Role, encode, new_instance_id, subjects
from harmony_fleet.contracts.lease import LEASE_KEY
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.runtime import Operator, OperatorConfig

BUDGET = 256 * 1024
FLOOD = 4000
PAYLOAD = b"x" * 2048  # undecodable: each one the operator takes is counted as rejected


class Stall:
    """An operator extension that blocks the loop for ``burst_s`` at a time while ``on`` is
    set, and records the most the heartbeats' pending queue held."""

    def __init__(self, burst_s: float = 0.02) -> None:
        self.on = asyncio.Event()
        self.burst_s = burst_s
        self.max_pending_bytes = 0
        self.max_pending_msgs = 0
        self.op: Operator | None = None

    def sample(self) -> None:
        sub = self.op.heartbeats if self.op is not None else None
        if sub is not None:
            self.max_pending_bytes = max(self.max_pending_bytes, sub.pending_bytes)
            self.max_pending_msgs = max(self.max_pending_msgs, sub.pending_msgs)

    def block(self) -> None:
        """Hold the loop: the slow loop this test is about (not a wait for anything)."""
        self.sample()
        time.sleep(self.burst_s)
        self.sample()

    async def __call__(self, op: Operator, _nc: NatsClient) -> None:
        self.op = op
        while True:
            await self.on.wait()
            self.block()
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def running(op: Operator) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.ensure_future(op.run())
    try:
        await asyncio.wait_for(op.ready.wait(), 30)
        yield task
    finally:
        op.stop.set()
        await asyncio.wait_for(task, 30)


def beat(device: str) -> bytes:
    return encode(
        Heartbeat(
            device_id=device, instance_id=new_instance_id(), agent_version="1.0.0",
            role=Role.MAIN, seq=0, sent_at=time.time(), uptime_s=1.0, interval_s=1.0,
        )
    )  # fmt: skip


async def test_a_flood_is_shed_with_counters_and_the_operator_ingests_after_it(
    nats_options: NatsOptions, nc: NatsClient
) -> None:
    stall = Stall()
    op = Operator(
        OperatorConfig(
            nats=nats_options,
            presence=PresencePolicy(missed=3, grace_s=0.5, refresh_s=2.0),
            flush_interval_s=0.1,
            admit=Admit.ANY,  # the test publishes with the admin's credentials
            max_pending_bytes=BUDGET,
            lease_ttl_s=5.0,
        ),
        extensions=[stall],
    )
    limits = op.pending_limits
    async with running(op) as task:
        stall.on.set()
        for i in range(FLOOD):
            await nc.publish(subjects.heartbeat("flood-1"), PAYLOAD)
            if i % 200 == 0:
                await nc.flush(timeout=30)
        await nc.flush(timeout=30)
        # Every message of the flood is either taken (rejected: undecodable) or counted dropped.
        await eventually(
            lambda: op.registry.rejected + op.drops.total >= FLOOD,
            timeout=60,
            what="the flood taken or dropped",
        )
        stall.on.clear()
        assert op.drops.counts[subjects.ALL_HEARTBEATS] > 0, "the flood did not hit the limit"
        assert op.registry.rejected + op.drops.total == FLOOD
        assert not task.done(), "the operator stopped"
        assert 0 < stall.max_pending_bytes < limits.bytes
        assert stall.max_pending_msgs <= limits.msgs
        dropped = op.drops.total

        await nc.publish(subjects.heartbeat("edge-after"), beat("edge-after"))
        await eventually(
            lambda: "edge-after" in op.registry.devices, timeout=30, what="ingested after"
        )
        assert op.drops.total == dropped
        assert not task.done()


#: A raw client in a process of its own: valid heartbeats of one device as fast as it can.
FLOODER = r"""
import asyncio, json, os, sys, time
from harmony_fleet.adapters.nats.connection import connect, NatsOptions
from harmony_fleet.contracts import Heartbeat, Role, encode, new_instance_id, subjects

async def main() -> None:
    o = json.loads(os.environ["FLOOD_OPTIONS"])
    nc = await connect(NatsOptions(**{**o, "servers": tuple(o["servers"])}))
    data = encode(Heartbeat(
        device_id="flood-1", instance_id=new_instance_id(), agent_version="1.0.0",
        role=Role.MAIN, seq=0, sent_at=time.time(), uptime_s=1.0))
    n, end = 0, time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        for _ in range(10_000):
            await nc.publish(subjects.heartbeat("flood-1"), data)
            n += 1
        await nc.flush(timeout=60)
    print(json.dumps({"sent": n}))
    await nc.close()

asyncio.run(main())
"""

LEASE_TTL_S = 2.0


async def test_a_flood_longer_than_the_lease_ttl_does_not_cost_the_operator_its_lease(
    nats_options: NatsOptions, nc: NatsClient
) -> None:
    op = Operator(
        OperatorConfig(
            nats=nats_options,
            admit=Admit.ANY,  # the flooder publishes with the admin's credentials
            lease_ttl_s=LEASE_TTL_S,
        )
    )
    async with running(op) as task:
        epoch = op.lease.epoch
        fields = {k: v for k, v in nats_options.with_name("flooder").__dict__.items()}
        fields.pop("extra")
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, str(3 * LEASE_TTL_S),
            env={**os.environ, "FLOOD_OPTIONS": json.dumps(fields)},
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(flooder.communicate(), 120)
        assert flooder.returncode == 0
        sent = json.loads(out)["sent"]
        # Until the operator has taken (or dropped) the whole backlog, its lease is renewed.
        await eventually(
            lambda: task.done() or op.registry.ingested + op.drops.total >= sent,
            timeout=120,
            what="the flood taken or dropped",
        )
        print(f"flood: {sent} heartbeats, ingested {op.registry.ingested}")
        assert not task.done(), f"the operator stopped: {op.lease.lost_reason}"
        assert not op.lease.lost.is_set(), op.lease.lost_reason
        assert op.lease.epoch == epoch
        assert "flood-1" in op.registry.devices
        found = await (await FleetKV(nc).open(LEASE)).read(LEASE_KEY)
        assert found is not None and not isinstance(found, Undecodable)
        assert (found.value.holder, found.value.epoch) == (op.lease.name, epoch)
