"""The chaos tier: a batch of upgrades on a 3-node cluster with two operators, one fault each.

Each scenario starts the fleet (tests/chaos/support.py), upgrades every device at once, injects
its fault while the batch is in flight, prints what the fault cost (a stall, an election, a
takeover), and checks the outcome (``check_outcome``: every device Succeeded or correctly
RolledBack, one agent process each, no status lost, no upgrade committed twice, the registry
converged). Marker ``chaos``; CI runs the tier once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from harmony_fleet.testing.clusterfleet import ClusterFleet
from tests.chaos.support import (
    P,
    check_outcome,
    meta_leader,
    node_index,
    some_device_at,
    start_devices,
    stream_leader,
    upgrade_all,
)
from tests.fleets import Built, build_versions, running
from tests.helpers import eventually

#: A scenario is minutes of wall time on 2 shared cores (the suite's default is 120 s).
pytestmark = pytest.mark.timeout(600)

IN_FLIGHT = (P.VERIFYING, P.CUTOVER_READY, P.HOLDING, P.COMMITTED)
#: How long a node stays frozen (the issue's scenario): a fault's duration, not a wait.
FROZEN_S = 10.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, ("1.0.0", "2.0.0"))


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[ClusterFleet]:
    fleet = ClusterFleet(tmp_path / "fleet", interval_s=0.5, operators=2, lease_ttl_s=2.0)
    async with running(fleet, built) as f:
        yield f


async def _in_flight(fleet: ClusterFleet) -> tuple[list[str], object]:
    await eventually(fleet.active_operator, timeout=60, what="an active operator")
    names = await start_devices(fleet)
    batch = await upgrade_all(fleet, names)
    await eventually(
        lambda: some_device_at(fleet, batch, *IN_FLIGHT), timeout=180, interval=0.1,
        what="the batch in flight",
    )  # fmt: skip
    return names, batch


async def _kill_the_leader(
    fleet: ClusterFleet, leader_of: Callable[[], Awaitable[str]], what: str
) -> tuple[str, str]:
    """With a batch in flight, kill the node ``leader_of`` names, wait for another leader
    (printing how long that took), restart the node and check the outcome (``check_outcome``
    asserts it). Returns the killed leader and the one that followed it."""
    _, batch = await _in_flight(fleet)
    assert fleet.cluster is not None
    leader = await leader_of()
    fleet.cluster.kill(node_index(leader))
    killed = time.monotonic()

    async def moved() -> str | None:
        try:
            now = await leader_of()
        except Exception:
            return None
        return now if now != leader else None

    successor: str = await eventually(moved, timeout=60, interval=0.2, what=f"a new {what}")
    took = time.monotonic() - killed
    print(f"chaos {what} {leader} killed: new leader after {took:.1f} s")
    await asyncio.to_thread(fleet.cluster.restart, node_index(leader))
    await check_outcome(fleet, batch, f"{what} killed")  # type: ignore[arg-type]
    return leader, successor


async def test_kill_the_jetstream_meta_leader(fleet: ClusterFleet) -> None:
    killed, successor = await _kill_the_leader(fleet, lambda: meta_leader(fleet), "meta leader")
    assert successor != killed


async def test_kill_the_leader_of_the_marker_buckets_stream(fleet: ClusterFleet) -> None:
    stream = "KV_fleet_upgrade_marker"
    leader = await _kill_the_leader(
        fleet, lambda: stream_leader(fleet, stream), "marker stream leader"
    )
    killed, successor = leader
    assert successor != killed


async def test_freeze_a_node_for_ten_seconds(fleet: ClusterFleet) -> None:
    _, batch = await _in_flight(fleet)
    assert fleet.cluster is not None
    leader = await stream_leader(fleet, "KV_fleet_upgrade_status")  # every agent writes there
    pid = fleet.cluster.nodes[node_index(leader)].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(FROZEN_S)  # the fault itself: the node frozen this long
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"chaos node {leader} (status stream leader) frozen {FROZEN_S:.0f} s")
    await check_outcome(fleet, batch, "node frozen 10 s")  # type: ignore[arg-type]


async def test_kill_the_active_operator_at_cutover_ready(fleet: ClusterFleet) -> None:
    _, batch = await _in_flight(fleet)
    await eventually(
        lambda: some_device_at(fleet, batch, P.CUTOVER_READY, P.HOLDING), timeout=180,
        interval=0.05, what="a device at CutoverReady",
    )  # fmt: skip
    active = await fleet.active_operator()
    assert active is not None
    fleet.kill_operator(active)
    killed = time.monotonic()

    async def taken_over() -> bool:
        holder = await fleet.active_operator()
        return holder is not None and holder != active

    await eventually(taken_over, timeout=60, interval=0.05, what="the standby taking over")
    took = time.monotonic() - killed
    print(f"chaos active operator {active} killed at CutoverReady: takeover {took:.1f} s")
    await check_outcome(fleet, batch, "active operator killed at CutoverReady")  # type: ignore[arg-type]


async def test_kill_both_operators_then_start_one(fleet: ClusterFleet) -> None:
    _, batch = await _in_flight(fleet)
    for name in list(fleet.operator_procs):
        fleet.kill_operator(name)
    killed = time.monotonic()
    fleet.start_named_operator("ops-3")  # a new one: it waits out the TTL of the dead holder

    async def active_again() -> bool:
        return await fleet.active_operator() == "ops-3"

    await eventually(active_again, timeout=60, interval=0.05, what="ops-3 active")
    print(f"chaos both operators killed, a new one active after {time.monotonic() - killed:.1f} s")
    await check_outcome(fleet, batch, "both operators killed, one started")  # type: ignore[arg-type]
