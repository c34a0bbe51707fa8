"""Benchmark: how fast the operator ingests heartbeats, against a bare nats-py subscriber.

Run: ``.venv/bin/python bench/heartbeats.py [--messages 300000] [--devices 20000]``

Three parts, each against a fresh embedded nats-server, each side in its own process:

1. **ceiling**: a bare nats-py subscriber on ``fleet.*.heartbeat`` that only counts, while a
   publisher process sends ``--messages`` pre-encoded heartbeats as fast as it can;
2. **operator**: the real :class:`~harmony_fleet.operator.runtime.Operator` (decode, registry,
   coalesced KV writes) against the same blast;
3. **fleet**: ``--devices`` simulated agents (one process) beating every ``--interval`` seconds
   for ``--rounds`` rounds against the operator; then the registry in KV is read back and every
   device must be shown online.

The final line is one JSON object: rates, their ratio (target >= 0.5), the operator's peak RSS,
and the fleet check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgspec

from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import Heartbeat, Role, encode, subjects


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def payloads(devices: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(devices):
        dev = f"dev-{i:06d}"
        hb = Heartbeat(
            device_id=dev,
            instance_id=uuid.uuid4().hex,
            agent_version="1.0.0",
            role=Role.MAIN,
            seq=1,
            sent_at=time.time(),
            uptime_s=1.0,
            interval_s=5.0,
        )
        out.append((subjects.heartbeat(dev), encode(hb)))
    return out


# -- roles (each runs in its own process) ------------------------------------------------------
async def role_bare(url: str, expect: int, idle_s: float) -> dict[str, float]:
    nc = await connect(NatsOptions(servers=(url,)))
    count = 0
    first = last = 0.0
    done = asyncio.Event()

    async def cb(msg: object) -> None:
        nonlocal count, first, last
        count += 1
        last = time.perf_counter()
        if count == 1:
            first = last
        if count >= expect:
            done.set()

    await nc.subscribe(
        subjects.ALL_HEARTBEATS,
        cb=cb,
        pending_msgs_limit=10_000_000,
        pending_bytes_limit=10_000_000 * 1024,
    )
    await nc.flush()
    print("READY", flush=True)
    await _wait_done(done, lambda: count, idle_s)
    await nc.close()
    return {"received": count, "seconds": last - first, "peak_rss_mib": peak_rss_mib()}


async def role_operator(url: str, expect: int, idle_s: float) -> dict[str, float]:
    from harmony_fleet.core.presence import PresencePolicy
    from harmony_fleet.operator.runtime import Operator, OperatorConfig

    op = Operator(
        OperatorConfig(nats=NatsOptions(servers=(url,)), presence=PresencePolicy(refresh_s=60.0))
    )
    task = asyncio.ensure_future(op.run())
    await op.ready.wait()
    first = last = 0.0
    seen = 0
    orig = op.registry.ingest

    def timed(subject: str, data: bytes, now: float) -> object:
        nonlocal first, last, seen
        seen += 1
        last = time.perf_counter()
        if seen == 1:
            first = last
        return orig(subject, data, now)

    op.registry.ingest = timed  # type: ignore[method-assign]
    print("READY", flush=True)
    done = asyncio.Event()

    async def watch() -> None:
        while seen < expect:
            await asyncio.sleep(0.05)
        done.set()

    watcher = asyncio.ensure_future(watch())
    await _wait_done(done, lambda: seen, idle_s)
    watcher.cancel()
    # Let the registry flush, so KV writes are part of the cost we measured RSS for.
    await op.flush()
    op.stop.set()
    await task
    return {
        "received": op.registry.ingested,
        "seconds": last - first,
        "peak_rss_mib": peak_rss_mib(),
        "writes": op.writes,
        "devices": len(op.registry.devices),
    }


async def role_operator_forever(url: str) -> None:
    from harmony_fleet.core.presence import PresencePolicy
    from harmony_fleet.operator.runtime import Operator, OperatorConfig

    op = Operator(
        OperatorConfig(nats=NatsOptions(servers=(url,)), presence=PresencePolicy(refresh_s=60.0))
    )
    task = asyncio.ensure_future(op.run())
    await op.ready.wait()
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await op.flush()
    result = {
        "ingested": op.registry.ingested,
        "writes": op.writes,
        "devices": len(op.registry.devices),
        "peak_rss_mib": peak_rss_mib(),
    }
    op.stop.set()
    await task
    print(json.dumps(result), flush=True)


async def _wait_done(done: asyncio.Event, progress: object, idle_s: float) -> None:
    """Wait until done, or until nothing new arrived for ``idle_s`` (messages were dropped)."""
    last_count = -1
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), idle_s)
        except TimeoutError:
            now = progress()  # type: ignore[operator]
            if now == last_count:
                return
            last_count = now


async def role_publish(url: str, messages: int, devices: int) -> dict[str, float]:
    nc = await connect(NatsOptions(servers=(url,)))
    batch = payloads(devices)
    start = time.perf_counter()
    for i in range(messages):
        subject, data = batch[i % devices]
        await nc.publish(subject, data)
    await nc.flush()
    seconds = time.perf_counter() - start
    await nc.close()
    return {"sent": messages, "seconds": seconds}


async def role_fleet(url: str, devices: int, interval: float, rounds: int) -> dict[str, float]:
    """Simulated agents: every device beats once per interval, spread evenly over it."""
    nc = await connect(NatsOptions(servers=(url,)))
    batch = payloads(devices)
    start = time.perf_counter()
    late = 0.0
    for r in range(rounds):
        round_start = start + r * interval
        for i, (subject, data) in enumerate(batch):
            due = round_start + interval * i / devices
            delay = due - time.perf_counter()
            if delay > 0.002:
                await nc.flush()
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            await nc.publish(subject, data)
    await nc.flush()
    await nc.close()
    return {"sent": devices * rounds, "max_lateness_s": late}


# -- driver ----------------------------------------------------------------------------------
def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        raise SystemExit(f"benchmark child failed to start: {line!r}")


def result_of(proc: subprocess.Popen[str], stdin: str = "") -> dict[str, float]:
    out, _ = proc.communicate(stdin, timeout=600)
    return json.loads(out.strip().splitlines()[-1])


def consume_run(role: str, messages: int, devices: int, tmp: Path) -> dict[str, float]:
    with EmbeddedNats(store_dir=tmp / f"nats-{role}", insecure=True) as server:
        consumer = spawn("--role", role, "--url", server.url, "--messages", str(messages))
        wait_ready(consumer)
        pub = spawn(
            "--role",
            "publish",
            "--url",
            server.url,
            "--messages",
            str(messages),
            "--devices",
            str(devices),
        )
        pub_result = result_of(pub)
        result = result_of(consumer)
        result["publish_seconds"] = pub_result["seconds"]
        return result


def fleet_run(devices: int, interval: float, rounds: int, tmp: Path) -> dict[str, object]:
    with EmbeddedNats(store_dir=tmp / "nats-fleet", insecure=True) as server:
        op = spawn("--role", "operator-forever", "--url", server.url)
        wait_ready(op)
        sim = spawn(
            "--role",
            "fleet",
            "--url",
            server.url,
            "--devices",
            str(devices),
            "--interval",
            str(interval),
            "--rounds",
            str(rounds),
        )
        sim_result = result_of(sim)
        op_result = result_of(op, "stop\n")
        online, total = asyncio.run(_count_online(server.url))
        return {
            "devices": devices,
            "interval_s": interval,
            "rounds": rounds,
            "registry_devices": total,
            "online": online,
            **sim_result,
            "operator_writes": op_result["writes"],
            "operator_peak_rss_mib": op_result["peak_rss_mib"],
        }


async def _count_online(url: str) -> tuple[int, int]:
    from harmony_fleet.adapters.nats.fleet_kv import FleetKV
    from harmony_fleet.adapters.nats.kv import Entry

    nc = await connect(NatsOptions(servers=(url,)))
    kv = await FleetKV(nc).devices()
    items = await kv.snapshot(timeout_s=120)
    await nc.close()
    online = sum(1 for e in items if isinstance(e, Entry) and e.value.online)
    return online, len(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", default="driver")
    ap.add_argument("--url")
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=5.0)
    a = ap.parse_args()
    if a.role == "bare":
        print(json.dumps(asyncio.run(role_bare(a.url, a.messages, a.idle))))
        return
    if a.role == "operator":
        print(json.dumps(asyncio.run(role_operator(a.url, a.messages, a.idle))))
        return
    if a.role == "operator-forever":
        asyncio.run(role_operator_forever(a.url))
        return
    if a.role == "publish":
        print(json.dumps(asyncio.run(role_publish(a.url, a.messages, a.devices))))
        return
    if a.role == "fleet":
        print(json.dumps(asyncio.run(role_fleet(a.url, a.devices, a.interval, a.rounds))))
        return
    with tempfile.TemporaryDirectory(prefix="bench-hb-") as tmp_s:
        tmp = Path(tmp_s)
        print(f"ceiling: bare subscriber, {a.messages} messages", file=sys.stderr)
        bare = consume_run("bare", a.messages, a.devices, tmp)
        print(f"  {bare}", file=sys.stderr)
        print("operator: same blast", file=sys.stderr)
        oper = consume_run("operator", a.messages, a.devices, tmp)
        print(f"  {oper}", file=sys.stderr)
        print(f"fleet: {a.devices} devices every {a.interval} s x {a.rounds}", file=sys.stderr)
        fleet = fleet_run(a.devices, a.interval, a.rounds, tmp)
        print(f"  {fleet}", file=sys.stderr)
    bare_rate = bare["received"] / max(bare["seconds"], 1e-9)
    op_rate = oper["received"] / max(oper["seconds"], 1e-9)
    ratio = op_rate / bare_rate
    summary = {
        "benchmark": "heartbeats",
        "messages": a.messages,
        "bare_subscriber_hb_per_s": round(bare_rate),
        "operator_hb_per_s": round(op_rate),
        "ratio": round(ratio, 3),
        "bare_received": bare["received"],
        "operator_received": oper["received"],
        "operator_peak_rss_mib": round(
            max(oper["peak_rss_mib"], float(fleet["operator_peak_rss_mib"])), 1
        ),
        "fleet": fleet,
        "targets_met": {
            "ratio_at_least_0_5": ratio >= 0.5,
            "all_devices_online": fleet["online"] == a.devices,
        },
        "cpus": os.cpu_count(),
    }
    print(msgspec.json.encode(summary).decode())


if __name__ == "__main__":
    main()
