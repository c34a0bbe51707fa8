"""``barrier()``: the server has processed everything sent before it, with or without echo.

The agent's connection has no echo (its own heartbeats would come back to it); the barrier it
waits on before saying it is connected must not rely on a message to itself.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import barrier, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats


@pytest.mark.parametrize("echo", [False, True])
async def test_a_subscription_before_a_barrier_gets_what_is_published_after_it(
    nats_server: EmbeddedNats, echo: bool
) -> None:
    nc = await connect(nats_server.client_options(extra={"no_echo": not echo}))
    other = await connect(nats_server.client_options())
    got: list[str] = []

    async def on_msg(msg: Any) -> None:
        got.append(msg.subject)

    try:
        for i in range(20):
            await nc.subscribe(f"barrier.{i}", cb=on_msg)
            await barrier(nc, timeout_s=2.0)  # without echo, the old barrier timed out here
            await other.publish(f"barrier.{i}", b"")
        await other.flush()
        await eventually(lambda: len(got) == 20, timeout=10, what="every message")
    finally:
        await nc.close()
        await other.close()
    assert sorted(got) == sorted(f"barrier.{i}" for i in range(20))
