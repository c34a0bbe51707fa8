"""A flood of heartbeats against a real nats-server: the operator sheds it with counters.

The operator's loop is made slow (an extension that blocks it in short bursts while the flood
lasts) and its pending budget tiny, so the flood outruns it: nats-py drops what does not fit
(a slow consumer) and the operator counts the drops; it keeps running, its pending bytes never
pass the limit, and it ingests again once the flood is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.contracts import Heartbeat, Role, encode, new_instance_id, subjects
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
