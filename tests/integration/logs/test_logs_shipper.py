"""The shipper inside a real Agent against a real server: exact counters across an outage."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from logs_support import drop_reports, stored
from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.logs import ShipConfig, enable_log_shipping
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import device_id

DEVICE = "edge-inproc"
CAPACITY = 50


async def test_lines_written_while_nats_is_down_never_block_and_are_counted_exactly(
    nats_server: EmbeddedNats, nats_options: NatsOptions, nc: NatsClient, tmp_path: Path
) -> None:
    agent = Agent(
        AgentConfig(
            device_id=device_id(DEVICE),
            state_dir=tmp_path / DEVICE,
            nats=nats_options,
            heartbeat_interval_s=0.2,
        )
    )
    app = logging.getLogger("test.inproc.app")  # only these lines: exact counts
    app.propagate = False
    app.setLevel(logging.INFO)
    shipper = enable_log_shipping(
        agent, ShipConfig(buffer_lines=CAPACITY, rate=0, report_interval_s=0.2), logger=app
    )
    assert shipper is not None
    run = asyncio.ensure_future(agent.run())
    try:
        await asyncio.wait_for(agent.connected.wait(), 15)
        for i in range(10):
            app.info("up %d", i, extra={"i": i})
        await eventually(lambda: shipper.delivered >= 10, what="lines shipped while connected")

        nats_server.stop()
        await eventually(lambda: not shipper.buffer.connected, what="the shipper sees the outage")
        sent_before = agent.sent
        for i in range(1000):  # synchronous calls: none of them can wait for NATS
            app.warning("down %d", i)
        counts = shipper.counters()
        assert counts["buffered"] == CAPACITY
        assert counts["disconnected"] == 1000 - CAPACITY
        assert counts["offered"] == 1010
        assert counts["rate_limit"] == counts["buffer_full"] == 0

        nats_server.start()
        await eventually(lambda: agent.sent > sent_before + 2, timeout=30, what="heartbeats")
        await eventually(
            lambda: shipper.buffer.connected and not len(shipper.buffer),
            timeout=30,
            what=f"drained after the outage {shipper.counters()}",
        )

        async def everything_stored() -> object:
            lines, _ = await stored(nc, DEVICE, source="agent")
            reports = drop_reports(lines)
            return len(lines) >= 10 + CAPACITY + 1 and reports and (lines, reports[-1])

        lines, report = await eventually(everything_stored, timeout=30, what="lines and report")
        assert report.fields["disconnected"] == 1000 - CAPACITY
        shipped = [x.msg for x in lines if x.msg != "logs.dropped"]
        assert shipped == [f"up {i}" for i in range(10)] + [
            f"down {i}" for i in range(1000 - CAPACITY, 1000)
        ], "the newest lines of the outage survive, in order"
        assert lines[0].fields == {"i": 0}
        seqs = [x.seq for x in lines]
        assert seqs == sorted(seqs) and seqs[10] == 11 + 1000 - CAPACITY, "gaps show the drops"
    finally:
        agent.request_exit(0)
        assert await asyncio.wait_for(run, 15) == 0
    assert shipper.handler not in app.handlers, "the handler goes with the agent"
