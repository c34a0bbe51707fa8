"""Benchmark: what losing a piece of the control plane costs, on a 3-node NATS cluster.

Run: ``.venv/bin/python bench/failover.py [--ttl 2] [--runs 1]``

A :class:`~harmony_fleet.testing.clusterfleet.ClusterFleet` (3 NATS nodes on loopback, every
bucket with 3 replicas, two ``fleet operator`` processes with lease TTL ``--ttl``, an artifact
server, one supervised device running real agent artifacts, heartbeat 0.5 s):

* ``takeover_s``: SIGKILL of the active operator -> the first registry record written by the
  standby (its lease epoch on the record). Target <= 2 x TTL (``takeover_over_ttl`` <= 2).
* ``commit_all_up_s`` / ``commit_one_down_s``: an upgrade's time from its marker to the
  Committed status, with every node up, then with one node killed (after its streams elected
  new leaders); ``commit_ratio`` = one down / all up, the baseline measured in the same run.
  Target <= 1.5.
* ``kv_stall_s``: SIGKILL of the node leading the registry bucket's stream -> the first KV
  write that succeeds (written every 20 ms, each failure retried at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.health import stream_health
from harmony_fleet.artifacts import build_artifact
from harmony_fleet.contracts import AgentUpgradePhase, DeviceRecord
from harmony_fleet.errors import FleetError
from harmony_fleet.testing.clusterfleet import ClusterFleet

DEV = "bench-01"
P = AgentUpgradePhase


async def until(check, limit_s: float, what: str, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll ``check`` (sync or async) until it is truthy; give up after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"failover bench: timed out waiting for {what}")
        await asyncio.sleep(interval)


async def takeover(fleet: ClusterFleet) -> float:
    active = await until(fleet.active_operator, 60, "an active operator")
    lease = await fleet.lease()
    assert lease is not None
    old_epoch = lease.epoch

    async def record_of_new_epoch() -> bool:
        record = await fleet.record(DEV)
        return record is not None and record.lease_epoch > old_epoch

    fleet.kill_operator(active)
    killed = time.monotonic()
    await until(record_of_new_epoch, 60, "a record of the new epoch", interval=0.01)
    took = time.monotonic() - killed
    fleet.start_named_operator(active)  # back as a standby
    return took


async def commit_time(fleet: ClusterFleet, version: str) -> float:
    marker = await fleet.request_upgrade(DEV, version)
    asked = time.monotonic()

    async def committed() -> bool:
        status = await fleet.status(DEV)
        return (
            status is not None
            and status.upgrade_id == marker.upgrade_id
            and status.phase in (P.COMMITTED, P.SUCCEEDED)
        )

    await until(committed, 120, f"the commit of {version}", interval=0.01)
    took = time.monotonic() - asked

    async def succeeded() -> bool:
        status = await fleet.status(DEV)
        return status is not None and status.phase is P.SUCCEEDED

    await until(succeeded, 120, f"{version} Succeeded")
    return took


async def leaders_without(fleet: ClusterFleet, dead: str) -> bool:
    assert fleet.nc is not None
    try:
        streams = await stream_health(fleet.nc)
    except FleetError:
        return False
    return all(s.leader not in (None, dead) for s in streams)


async def kv_stall(fleet: ClusterFleet) -> float:
    assert fleet.nc is not None and fleet.cluster is not None
    devices = await FleetKV(fleet.nc).devices()
    now = time.time()
    probe = DeviceRecord(
        device_id="stall-probe", current_version="0.0.0", online=False,
        first_seen=now, last_seen=now,
    )  # fmt: skip
    await devices.put("stall-probe", probe)
    streams = {s.name: s for s in await stream_health(fleet.nc)}
    leader = streams["KV_fleet_devices"].leader
    index = int(str(leader).removeprefix("n")) - 1
    fleet.cluster.kill(index)
    killed = time.monotonic()

    async def written() -> bool:
        try:
            await devices.put("stall-probe", probe)
        except FleetError:
            return False
        return True

    await until(written, 60, "a KV write after the leader died")
    stall = time.monotonic() - killed
    await devices.delete("stall-probe")
    await asyncio.to_thread(fleet.cluster.restart, index)
    return stall


async def main(ttl: float, runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp:
        work = Path(tmp)
        versions = ["1.0.0", *(f"{2 + i}.0.0" for i in range(2 * runs))]
        out = work / "artifacts"
        out.mkdir()
        manifests = [build_artifact(v, out) for v in versions]
        fleet = ClusterFleet(work / "fleet", interval_s=0.5, operators=2, lease_ttl_s=ttl)
        await fleet.start()
        try:
            for manifest in manifests:
                fleet.adopt(manifest, out)
            await fleet.add_device(DEV, "1.0.0")
            await until(lambda: fleet.record(DEV), 60, "the device registered")
            takeover_s = await takeover(fleet)

            up = [await commit_time(fleet, v) for v in versions[1 : 1 + runs]]
            assert fleet.cluster is not None
            fleet.cluster.kill(2)  # n3: node 1 issues credentials, node 2 stays for quorum
            await until(lambda: leaders_without(fleet, "n3"), 60, "leaders without n3", 0.1)
            down = [await commit_time(fleet, v) for v in versions[1 + runs :]]
            await asyncio.to_thread(fleet.cluster.restart, 2)
            await until(lambda: leaders_without(fleet, ""), 60, "every stream led", 0.1)

            stall_s = await kv_stall(fleet)
        finally:
            await fleet.stop()
    all_up, one_down = statistics.median(up), statistics.median(down)
    return {
        "lease_ttl_s": ttl,
        "takeover_s": round(takeover_s, 3),
        "takeover_over_ttl": round(takeover_s / ttl, 2),
        "commit_all_up_s": round(all_up, 3),
        "commit_one_down_s": round(one_down, 3),
        "commit_ratio": round(one_down / all_up, 2),
        "kv_stall_s": round(stall_s, 3),
        "runs": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttl", type=float, default=2.0, help="operator lease TTL (s)")
    parser.add_argument("--runs", type=int, default=1, help="upgrades per condition")
    args = parser.parse_args()
    result = asyncio.run(main(args.ttl, args.runs))
    print(json.dumps(result), flush=True)
    ok = result["takeover_over_ttl"] <= 2 and result["commit_ratio"] <= 1.5  # type: ignore[operator]
    sys.exit(0 if ok else 1)
