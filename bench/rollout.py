"""Benchmark: a rollout of 10,000 simulated devices through the real operator process.

Run: ``.venv/bin/python bench/rollout.py [--devices 10000] [--upgrade-time 45] [--watch 15]
[--sim-procs 2]`` (``--devices 500`` for a quick look on a shared machine; the targets are for
the defaults).

Two parts, each on a fresh dev/test nats-server (TLS and credentials, as ``fleet server --dev``
runs it), with ``fleet operator`` as its own process (operator credentials, admitting issued
identities only) and ``fleet sim`` as another (a ``sim`` credential, ``--sim-procs`` worker
processes), every device heartbeating every 5 s:

1. **waves**: canary 1 %, max-in-flight 1,000, no soak, no spread; each device's upgrade takes
   ``--upgrade-time`` seconds (marker to candidate) plus its ``--watch`` window. The baseline,
   measured in the same run on the same stack, is a rollout of one device alone
   (``single_device_s``: every latency of the protocol, nothing of scale). The ideal is
   ``waves x (upgrade time + watch)``; ``ratio`` is the rollout's wall time (create to Done)
   over it (target <= 1.3), ``ratio_to_single`` over ``waves x single_device_s``. The
   operator's peak RSS is read from ``/proc`` (``VmHWM``; target <= 300 MiB).
2. **halt**: the same fleet where 20 % of the devices fail their self-test, so about 20 % of the
   canaries do: the rollout must halt with no device beyond the canaries started
   (``halt_non_canary_started`` = 0: no progress record of a later wave, no more markers than
   canaries).

The final line is one JSON object with both parts and ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
)
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import (
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
)
from harmony_fleet.contracts.upgrade import UpgradeTimeouts
from harmony_fleet.testing.releases import LocalReleases

OLD, NEW = "1.0.0", "2.0.0"
TARGET_RATIO = 1.3
TARGET_RSS_MIB = 300.0


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident memory of process ``pid`` (``VmHWM``), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class Stack:
    """A dev/test server, ``fleet operator`` and ``fleet sim`` as processes."""

    def __init__(self, tmp: Path, name: str, devices: int, sim_args: list[str]) -> None:
        self.tmp = tmp / name
        self.tmp.mkdir()
        self.nats = EmbeddedNats(store_dir=self.tmp / "nats", dev=True)
        self.devices = devices
        self.sim_args = sim_args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.releases = LocalReleases.init(self.tmp / "release-repo")

    def __enter__(self) -> Stack:
        url = self.nats.start()
        ca = str(self.nats.auth.ca_file)
        op = self.nats.issue("operator", "bench-operator", self.tmp / "operator.creds")
        sim = self.nats.issue("sim", "sim-bench", self.tmp / "sim.creds")
        common = ["--nats", url, "--nats-tls-ca", ca]
        self.operator = self._spawn(
            "operator",
            "operator",
            *common,
            "--nats-creds",
            str(op),
            # One operator, no standby: a long lease, so that a renewal late on a loaded
            # machine does not depose it (the lease only bounds a standby's takeover).
            "--lease-ttl",
            "120",
            "--tuf-root",
            str(self.releases.trust_root),
            "--state-dir",
            str(self.tmp / "operator"),
        )
        self._spawn(
            "sim",
            "sim",
            "--devices",
            str(self.devices),
            *self.sim_args,
            *common,
            "--nats-creds",
            str(sim),
        )
        return self

    def _spawn(self, log: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"{log}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "harmony_fleet", *args], stdout=out, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.nats.stop()

    async def admin(self) -> NatsClient:
        return await connect(self.nats.client_options().with_name("bench"))


async def wait_online(kv: FleetKV, devices: int, limit_s: float = 300.0) -> float:
    started = time.monotonic()
    registry = await kv.devices()
    while time.monotonic() - started < limit_s:
        online = sum(
            1 for e in await registry.snapshot() if isinstance(e, Entry) and e.value.online
        )
        if online >= devices:
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(2.0)
    raise SystemExit(f"the registry never showed {devices} devices online")


async def publish_release(nc: NatsClient, releases: LocalReleases, tmp: Path) -> None:
    """Sign and publish ``NEW`` (what ``fleet release publish`` does): the operator resolves it
    through the signed metadata (``--tuf-root``); the simulated devices download nothing."""
    artifact = tmp / "agent-2.0.0.pyz"
    artifact.write_bytes(b"a simulated agent 2.0.0\n" * 1000)
    await releases.publish(nc, artifact, NEW)


async def create(kv: FleetKV, name: str, watch_s: float, **fields: Any) -> None:
    spec: dict[str, Any] = {
        "name": name,
        "version": NEW,
        "created_at": time.time(),
        "soak_s": 0.0,
        "spread_s": 0.0,
        "canary": Share(percent=1.0),
        "max_in_flight": Share(count=1000),
        "timeouts": UpgradeTimeouts(watch_s=watch_s, cutover_s=120.0, hold_s=120.0),
    }
    spec.update(fields)
    await (await kv.open(ROLLOUTS)).put(name, Rollout(**spec))


async def wait_phase(
    kv: FleetKV, name: str, phases: set[RolloutPhase], limit_s: float
) -> RolloutStatus:
    statuses = await kv.open(ROLLOUT_STATUSES)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        entry = await statuses.get(name)
        if entry is not None and entry.value.phase in phases:
            return entry.value
        await asyncio.sleep(0.25)
    raise SystemExit(f"rollout {name} never reached {sorted(phases)} in {limit_s} s")


async def waves_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    per_device = args.upgrade_time + args.watch
    sim_args = [
        "--processes",
        str(args.sim_procs),
        "--upgrade-time",
        f"{args.upgrade_time}s",
        "--label",
        "role=fleet",
    ]
    with Stack(tmp, "waves", args.devices, sim_args) as stack:
        nc = await stack.admin()
        try:
            kv = FleetKV(nc)
            online_s = await wait_online(kv, args.devices)
            await publish_release(nc, stack.releases, stack.tmp)
            # The baseline: a rollout of one canary and a long soak, aborted (and its spec
            # deleted) once that device succeeded, before any wave; the fleet rollout then
            # counts that device already at the version.
            started = time.monotonic()
            await create(kv, "single", args.watch, canary=Share(count=1), soak_s=3600.0)
            single = await wait_single(kv, args, started)
            started = time.monotonic()
            await create(kv, "fleet", args.watch)
            status = await wait_phase(
                kv, "fleet", {RolloutPhase.DONE, RolloutPhase.HALTED}, args.limit
            )
            took = time.monotonic() - started
        finally:
            await nc.close()
        rss = vm_hwm_mib(stack.operator.pid)
    waves = status.wave + 1
    ideal = waves * per_device
    return {
        "devices": args.devices,
        "online_after_s": online_s,
        "phase": status.phase.value,
        "counts": dict(status.counts),
        "waves": waves,
        "per_device_s": per_device,
        "single_device_s": round(single, 2),
        "wall_s": round(took, 1),
        "ideal_s": ideal,
        "ratio": round(took / ideal, 3),
        "ratio_to_single": round(took / (waves * single), 3),
        "operator_peak_rss_mib": rss,
    }


async def wait_single(kv: FleetKV, args: argparse.Namespace, started: float) -> float:
    """Until the baseline rollout's one device succeeded; then abort it and delete its spec."""
    progress = await kv.open(ROLLOUT_PROGRESS)
    deadline = time.monotonic() + 10 * (args.upgrade_time + args.watch) + 60
    while time.monotonic() < deadline:
        entry = next(iter(await progress.snapshot()), None)
        if isinstance(entry, Entry) and entry.value.state is DeviceState.SUCCEEDED:
            took = time.monotonic() - started
            rollouts = await kv.open(ROLLOUTS)
            spec = await rollouts.get("single")
            assert spec is not None
            await rollouts.put("single", msgspec.structs.replace(spec.value, aborted=True))
            await wait_phase(kv, "single", {RolloutPhase.ABORTED}, 60)
            await rollouts.delete("single")
            return took
        await asyncio.sleep(0.1)
    raise SystemExit("the single-device baseline never finished")


async def halt_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sim_args = [
        "--processes",
        str(args.sim_procs),
        "--upgrade-time",
        "5s",
        "--fail-self-test",
        "20%",
    ]
    # 1 % of the fleet, at least 10 devices (at 100 devices 1 % is one canary: whether it is
    # among the 20 % is luck, not a measurement).
    canaries = max(10, math.ceil(args.devices / 100))
    with Stack(tmp, "halt", args.devices, sim_args) as stack:
        nc = await stack.admin()
        try:
            kv = FleetKV(nc)
            await wait_online(kv, args.devices)
            await publish_release(nc, stack.releases, stack.tmp)
            started = time.monotonic()
            await create(kv, "bad", 1.0, canary=Share(count=canaries))
            status = await wait_phase(kv, "bad", {RolloutPhase.HALTED, RolloutPhase.DONE}, 300)
            took = time.monotonic() - started
            await asyncio.sleep(5.0)  # time for a wrong start to show, if there were one
            records = [
                e.value
                for e in await (await kv.open(ROLLOUT_PROGRESS)).snapshot()
                if isinstance(e, Entry)
            ]
            markers = len(await (await kv.markers()).keys())
        finally:
            await nc.close()
    canaries = [r for r in records if r.wave == 0]
    later = [r for r in records if r.wave is not None and r.wave > 0]
    failed = [r for r in canaries if r.state.value in ("failed", "rolled_back")]
    return {
        "phase": status.phase.value,
        "halted_after_s": round(took, 1),
        "canaries": len(canaries),
        "canaries_failed": len(failed),
        "markers": markers,
        "halt_non_canary_started": len(later) + max(0, markers - len(canaries)),
        "reason": status.halt_reason[:200],
    }


def main() -> None:
    # SIGTERM unwinds like Ctrl-C: the server, the operator and the simulator are stopped.
    signal.signal(signal.SIGTERM, lambda _n, _f: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--upgrade-time", type=float, default=45.0)
    ap.add_argument("--watch", type=float, default=15.0)
    ap.add_argument("--sim-procs", type=int, default=2)
    ap.add_argument("--limit", type=float, default=1800.0, help="Give up after (s).")
    ap.add_argument("--parts", default="waves,halt")
    ap.add_argument("--keep", type=Path, default=None, help="Keep the logs in this directory.")
    args = ap.parse_args()
    result: dict[str, Any] = {"bench": "rollout"}
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as scratch:
        tmp = str(args.keep or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        parts = args.parts.split(",")
        if "waves" in parts:
            result["waves"] = asyncio.run(waves_part(args, Path(tmp)))
        if "halt" in parts:
            result["halt"] = asyncio.run(halt_part(args, Path(tmp)))
    ok = True
    if "waves" in result:
        w = result["waves"]
        ok &= w["phase"] == "Done" and w["ratio"] <= TARGET_RATIO
        ok &= (w["operator_peak_rss_mib"] or math.inf) <= TARGET_RSS_MIB
    if "halt" in result:
        h = result["halt"]
        ok &= h["phase"] == "Halted" and h["halt_non_canary_started"] == 0
    result["targets"] = {"ratio": TARGET_RATIO, "operator_peak_rss_mib": TARGET_RSS_MIB}
    result["ok"] = bool(ok)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
