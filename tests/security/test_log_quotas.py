"""One device cannot evict another's log history: device A floods every log subject its
credentials allow (its agent's, and as many invented unit names as it likes) with lines at the
size limit, far past its quota; device B's earlier lines are all still there and `fleet logs B`
shows them. A's own stored share stays within its quota (docs/logs.md, the arithmetic).

The stream is made again with small limits (the arithmetic is the same at any scale): 20 lines
per stored subject and a ceiling of 3 devices' quotas, which A's flood exceeds tenfold.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import LOG_STREAM, LogStreamLimits
from harmony_fleet.adapters.nats.provision import ensure_log_stream
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import LogLevel, LogLine, Role, encode, subjects
from harmony_fleet.contracts.logs import log_subject
from tests.helpers import eventually, run_fleet
from tests.security.support import attacker

LIMITS = LogStreamLimits(max_msgs_per_subject=20, max_devices=3)
UNITS = 40
FLOOD = 60  # lines per subject: three times what one stored subject keeps


def line(device: str, seq: int, msg: str, source: str = "agent") -> LogLine:
    return LogLine(
        device_id=device,
        instance_id="0123456789abcdef0123456789abcdef",
        agent_version="1.0.0",
        role=Role.MAIN,
        source=source,
        seq=seq,
        ts=time.time(),
        level=LogLevel.INFO,
        logger="test",
        msg=msg,
    )


async def test_a_flooding_device_cannot_evict_another_devices_history(
    nats_server: EmbeddedNats, creds: dict[str, Path], nc: NatsClient
) -> None:
    js = nc.jetstream()
    await js.delete_stream(LOG_STREAM)  # the bootstrap made it with the defaults
    info = await ensure_log_stream(js, LIMITS)
    assert info.config.max_bytes == 3 * LIMITS.device_quota_bytes

    b = await attacker(nats_server, creds["edge-b"], inbox_prefix=subjects.inbox_prefix("edge-b"))
    a = await attacker(nats_server, creds["edge-a"], inbox_prefix=subjects.inbox_prefix("edge-a"))
    try:
        history = [f"b line {i}" for i in range(8)]
        for seq, msg in enumerate(history[:4], 1):
            await b.nc.publish(log_subject("edge-b", "agent"), encode(line("edge-b", seq, msg)))
        for seq, msg in enumerate(history[4:], 1):
            body = encode(line("edge-b", seq, msg, "unit.web"))
            await b.nc.publish(log_subject("edge-b", "unit.web"), body)
        await b.nc.flush()

        big = "x" * 8 * 1024  # with the JSON around it, near the 16 KiB line limit
        sources = ["agent", *(f"unit.u{i}" for i in range(UNITS))]
        for source in sources:
            for seq in range(FLOOD):
                body = encode(line("edge-a", seq, big, source))
                await a.nc.publish(log_subject("edge-a", source), body)
            await a.nc.flush()
        # Subjects outside the two its credentials allow are refused by the server.
        for invented in ("fleet.edge-a.logs.other", "fleet.edge-a.logs.unit.x.y"):
            await a.nc.publish(invented, encode(line("edge-a", 0, big)))
            await a.refused(invented)
        flooded = len(sources) * FLOOD * len(big)
        assert flooded > 10 * info.config.max_bytes, "the flood is far past the stream's ceiling"

        stored = len(history) + len(sources) * FLOOD

        async def all_stored() -> bool:  # every message got its sequence, kept or discarded
            return (await js.stream_info(LOG_STREAM)).state.last_seq >= stored

        await eventually(all_stored, what="the flood through the stream")
        done = await asyncio.to_thread(run_fleet, "logs", "edge-b", "--json", "-n", "1000")
        assert done.returncode == 0, done.stderr
        shown = [json.loads(row)["msg"] for row in done.stdout.splitlines()]
        assert sorted(shown) == sorted(history), "every line of B survived A's flood"
        web = await asyncio.to_thread(run_fleet, "logs", "edge-b", "--source", "unit.web", "--json")
        assert [json.loads(row)["msg"] for row in web.stdout.splitlines()] == history[4:]

        # A kept its quota: two stored subjects (every unit name folded into one), 20 lines
        # each, every line at most max_msg_size; the stream is within its ceiling.
        mine = await js.stream_info(LOG_STREAM, subjects_filter="fleet.edge-a.>")
        assert mine.state.subjects == {"fleet.edge-a.logs.agent": 20, "fleet.edge-a.logs.units": 20}
        assert (await js.stream_info(LOG_STREAM)).state.bytes <= info.config.max_bytes
    finally:
        await a.close()
        await b.close()
