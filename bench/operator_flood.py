"""Benchmark: an operator under a flood of heartbeats keeps its memory (docs/operations.md,
"Memory under load").

Run: ``.venv/bin/python bench/operator_flood.py [--seconds 8] [--size 0]``

A real nats-server (TLS and credentials), an operator in this process with the default
``--max-pending-bytes``, and a second process that publishes on one device's heartbeat subject
as fast as one client can for ``--seconds``: valid heartbeats (``--size 0``) or undecodable
messages of ``--size`` bytes. Prints one JSON line: what was sent, what the operator ingested,
rejected and dropped (slow consumer), its RSS before and at peak (``VmHWM``), the most its
heartbeat queue held (sampled at every turn of the loop), its limits, and whether it was still
running and still holding its lease (which has a connection of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.runtime import Operator, OperatorConfig

FLOODER = r"""
import asyncio, json, os, sys, time
from harmony_fleet.adapters.nats.connection import connect, NatsOptions
from harmony_fleet.contracts import Heartbeat, Role, encode, new_instance_id, subjects

async def main() -> None:
    o = json.loads(os.environ["FLOOD_OPTIONS"])
    nc = await connect(NatsOptions(**{**o, "servers": tuple(o["servers"])}))
    size, seconds = int(sys.argv[1]), float(sys.argv[2])
    data = b"x" * size if size else encode(Heartbeat(
        device_id="flood-1", instance_id=new_instance_id(), agent_version="1.0.0",
        role=Role.MAIN, seq=0, sent_at=time.time(), uptime_s=1.0))
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(max(1, 2_000_000 // len(data))):
            await nc.publish(subjects.heartbeat("flood-1"), data)
            n += 1
        await nc.flush(timeout=30)
    print(json.dumps({"sent": n, "size": len(data)}))
    await nc.close()

asyncio.run(main())
"""


def mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key):
                return round(int(line.split()[1]) / 1024, 1)
    raise LookupError(key)


async def run(seconds: float, size: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="operator-flood-"))
    server = EmbeddedNats(
        store_dir=tmp / "nats", log_file=tmp / "nats.log", context_file=tmp / "context.json"
    )
    server.start()
    try:
        options = server.client_options()
        op = Operator(OperatorConfig(nats=options, admit=Admit.ANY, lease_ttl_s=5.0))
        task = asyncio.ensure_future(op.run())
        await asyncio.wait_for(op.ready.wait(), 60)
        before = mib("VmRSS")
        most = {"bytes": 0, "msgs": 0}

        async def sample() -> None:
            while True:
                if (sub := op.heartbeats) is not None:
                    most["bytes"] = max(most["bytes"], sub.pending_bytes)
                    most["msgs"] = max(most["msgs"], sub.pending_msgs)
                await asyncio.sleep(0)

        sampler = asyncio.ensure_future(sample())
        fields = {k: v for k, v in options.__dict__.items() if k != "extra"}
        flooder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOODER, str(size), str(seconds),
            env={**os.environ, "FLOOD_OPTIONS": json.dumps(fields)},
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await flooder.communicate()
        flood = json.loads(out)
        deadline = time.monotonic() + 60
        reg = op.registry
        while not task.done() and time.monotonic() < deadline:
            if reg.ingested + reg.rejected + op.drops.total >= flood["sent"]:
                break
            await asyncio.sleep(0.1)
        sampler.cancel()
        running = not task.done()
        op.stop.set()
        await asyncio.gather(task, sampler, return_exceptions=True)
        return {
            "seconds": seconds,
            **flood,
            "ingested": reg.ingested,
            "rejected": reg.rejected,
            "dropped": op.drops.total,
            "rss_before_mib": before,
            "rss_peak_mib": mib("VmHWM"),
            "most_pending_bytes": most["bytes"],
            "most_pending_msgs": most["msgs"],
            "limits": {"msgs": op.pending_limits.msgs, "bytes": op.pending_limits.bytes},
            "still_running": running,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=0, help="0: valid heartbeats")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.seconds, args.size))))


if __name__ == "__main__":
    main()
