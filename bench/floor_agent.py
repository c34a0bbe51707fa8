"""The floor ``bench/agent_footprint.py`` measures the agent against: a bare nats-py heartbeat.

It does what an idle agent must do and nothing else: connect (TLS, a device's ``.creds``, reconnect
forever) and publish a heartbeat of the agent's shape on the agent's subject every interval, each
interval jittered, each beat scheduled from the previous deadline. It imports only the standard
library and nats-py (nkeys signs the connection), so it runs in a venv holding exactly what the
agent's artifact holds; the bench makes that venv without aiohttp, which nats-py imports whenever
it is installed.

Run: ``python floor_agent.py --device-id D --nats URL --nats-creds F --nats-tls-ca F``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import signal
import ssl
import time

import nats


async def beat(args: argparse.Namespace) -> None:
    tls = ssl.create_default_context(cafile=args.nats_tls_ca)
    nc = await nats.connect(
        servers=[args.nats],
        user_credentials=args.nats_creds,
        tls=tls,
        name=f"floor:{args.device_id}",
        max_reconnect_attempts=-1,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    subject = f"fleet.{args.device_id}.heartbeat"
    instance_id = secrets.token_hex(16)
    started = time.monotonic()
    seq = 0
    deadline = loop.time()
    while not stop.is_set():
        seq += 1
        heartbeat = {
            "v": 1,
            "device_id": args.device_id,
            "instance_id": instance_id,
            "agent_version": "0.0.0",
            "role": "main",
            "seq": seq,
            "sent_at": time.time(),
            "uptime_s": round(time.monotonic() - started, 3),
            "interval_s": args.interval,
            "labels": {},
        }
        await nc.publish(subject, json.dumps(heartbeat).encode())
        deadline = max(deadline + args.interval * random.uniform(0.9, 1.1), loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, deadline - loop.time()))
    await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--nats-creds", required=True)
    parser.add_argument("--nats-tls-ca", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    asyncio.run(beat(parser.parse_args()))


if __name__ == "__main__":
    main()
