"""A stopped coordinator leaves none of its tasks running (its two KV watches used to be
cancelled and left behind: under load they outlived the operator that ran them)."""

from __future__ import annotations

import asyncio

from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.registry import Registry


def watches() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and "Coordinator._watch" in t.get_coro().__qualname__  # type: ignore[union-attr]
    ]


async def test_a_cancelled_coordinator_waits_for_its_watches(nc: NatsClient) -> None:
    coordinator = Coordinator(Registry())
    run = asyncio.ensure_future(coordinator.run(nc))
    await eventually(lambda: len(watches()) == 2, what="the marker and status watches")
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert watches() == []
