"""``Rollout`` resources against the API emulator: created, driven by the same engine, paused,
resumed, undone, refused, aborted by deletion, and shown by ``kubectl get rollouts``.

The first tests run the mirror in this process against real NATS (the engine's passes are
``drive_once``, the devices are their KV records, as in tests/integration/rollout); the last one
runs the real operator process with real agents.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import ROLLOUTS, FleetKV
from harmony_fleet.contracts import AgentUpgradePhase, DeviceRecord, Rollout, RolloutPhase
from harmony_fleet.operator.kubernetes.api import RolloutApi, load_configuration
from harmony_fleet.operator.kubernetes.rollout_mirror import RolloutMirror
from harmony_fleet.operator.rollouts import drive_once
from tests.helpers import eventually
from tests.integration.rollout.test_drive_once import (
    DEVICES,
    NEW,
    OLD,
    _device_reports,
    _marked,
    signed,
)
from tests.kubernetes.conftest import Cluster, KubeFleet
from tests.kubernetes.support import (
    columns,
    create_rollout,
    delete_rollout,
    patch_rollout,
    publish,
)
from tests.kubernetes.test_kubernetes_mode import reflected, started

SPEC = {"version": NEW, "canary": 2, "maxInFlight": 3, "soakSeconds": 0, "spreadSeconds": 0}


@pytest.fixture
async def mirror(cluster: Cluster, nc: NatsClient) -> AsyncIterator[RolloutMirror]:
    kv = FleetKV(nc)
    now = time.time()
    for device in DEVICES:
        await (await kv.devices()).put(
            device,
            DeviceRecord(
                device_id=device, current_version=OLD, online=True, first_seen=now, last_seen=now
            ),
        )
    cfg = await load_configuration(str(cluster.kubeconfig))
    async with client.ApiClient(cfg) as api_client:
        yield RolloutMirror(RolloutApi(api_client, cluster.namespace), kv)


def writes(cluster: Cluster) -> int:
    return sum(1 for q in cluster.emulator if q.method in ("POST", "PATCH"))


async def stored(kv: FleetKV, name: str = "spring") -> Rollout:
    entry = await (await kv.open(ROLLOUTS)).get(name)
    assert entry is not None, f"no rollout {name} in fleet_rollouts"
    return entry.value


async def settle(kv: FleetKV, now: float) -> None:
    """Every device holding a marker reports Succeeded (as its agent would)."""
    for device in await _marked(kv):
        if await (await kv.statuses()).get(device) is None:
            await _device_reports(kv, device, AgentUpgradePhase.SUCCEEDED, now)


async def test_a_resource_becomes_a_rollout_the_engine_drives_and_shows_it(
    cluster: Cluster, mirror: RolloutMirror
) -> None:
    kv, now = mirror.kv, time.time()
    await create_rollout(cluster, "spring", SPEC)
    await mirror.pass_once(now)
    rollout = await stored(kv)
    assert (rollout.version, rollout.created_by) == (NEW, f"kubernetes:{cluster.namespace}/spring")
    first = await drive_once(kv, "spring", now=now, releases=signed)
    assert len(first.starts) == 2, "the same engine: two canaries"
    await mirror.pass_once(now)
    assert columns(cluster.rollout("spring")) == {
        "Version": NEW,
        "Phase": "Canary",
        "Wave": 0,
        "Done": 0,
        "Failed": 0,
        "Pending": len(DEVICES),
        "Paused": None,
        "Age": cluster.rollout("spring")["metadata"]["creationTimestamp"],  # type: ignore[index]
    }
    before = writes(cluster)
    await mirror.pass_once(now + 1)
    assert writes(cluster) == before, "a steady rollout costs no API writes"

    # paused from kubectl: the engine starts nobody new
    await patch_rollout(cluster, "spring", {"paused": True})
    await mirror.pass_once(now)
    assert (await stored(kv)).paused
    await settle(kv, now)
    paused = await drive_once(kv, "spring", now=now + 1, releases=signed)
    assert paused.status.phase is RolloutPhase.PAUSED and paused.starts == ()
    await mirror.pass_once(now)
    assert columns(cluster.rollout("spring"))["Phase"] == "Paused"
    assert columns(cluster.rollout("spring"))["Done"] == 2

    # resumed: the waves run to the end
    await patch_rollout(cluster, "spring", {"paused": False})
    await mirror.pass_once(now)
    for step in range(12):
        result = await drive_once(kv, "spring", now=now + 2 + step, releases=signed)
        await settle(kv, now)
        if result.finished:
            break
    await mirror.pass_once(now)
    shown = columns(cluster.rollout("spring"))
    assert (shown["Phase"], shown["Done"], shown["Failed"], shown["Pending"]) == (
        "Done",
        len(DEVICES),
        0,
        0,
    )

    # undo from kubectl: every device gets its way back, reported on the resource
    await patch_rollout(cluster, "spring", {"undo": True})
    await mirror.pass_once(now)
    undo = await drive_once(kv, "spring", now=now + 20, releases=signed)
    assert undo.starts and all(s.undo for s in undo.starts)
    await mirror.pass_once(now)
    status = cluster.rollout("spring")["status"]  # type: ignore[index]
    assert status["phase"] == "Undoing"
    assert status["undo"]["inProgress"] == len(undo.starts)

    # what defines the rollout cannot change: said on the resource, nothing written
    await patch_rollout(cluster, "spring", {"version": "3.0.0", "undo": False})
    await mirror.pass_once(now)
    assert (await stored(kv)).version == NEW and (await stored(kv)).undo_requested
    [condition] = cluster.rollout("spring")["status"]["conditions"]  # type: ignore[index]
    assert (condition["status"], condition["reason"]) == ("False", "Immutable")


async def test_refusals_and_a_deleted_resource_aborting_its_rollout(
    cluster: Cluster, mirror: RolloutMirror
) -> None:
    kv, now = mirror.kv, time.time()
    # a value this version cannot read (a newer writer's) stops nothing
    await (await kv.js.key_value(ROLLOUTS.name)).put("junk", b"{not json")
    # a rollout somebody created with `fleet rollout create` is not taken over
    by_cli = Rollout(name="autumn", version=NEW, created_at=now, created_by="alice@laptop")
    await (await kv.open(ROLLOUTS)).create("autumn", by_cli)
    await create_rollout(cluster, "autumn", {**SPEC, "paused": True})
    await create_rollout(cluster, "broken", {"version": NEW, "canary": "many"})
    await create_rollout(cluster, "spring", SPEC)
    await mirror.pass_once(now)
    assert await stored(kv, "autumn") == by_cli
    reasons = {
        name: cluster.rollout(name)["status"]["conditions"][0]["reason"]  # type: ignore[index]
        for name in ("autumn", "broken", "spring")
    }
    assert reasons == {"autumn": "NameTaken", "broken": "InvalidSpec", "spring": "Accepted"}
    assert await (await kv.open(ROLLOUTS)).get("broken") is None
    assert "phase" not in cluster.rollout("autumn")["status"]  # type: ignore[index]

    await drive_once(kv, "spring", now=now, releases=signed)
    await delete_rollout(cluster, "spring")
    await delete_rollout(cluster, "autumn")
    await mirror.pass_once(now)
    assert (await stored(kv)).aborted, "its resource gone, the rollout stops"
    assert await stored(kv, "autumn") == by_cli, "not ours: left alone"
    result = await drive_once(kv, "spring", now=now + 1, releases=signed)
    assert result.status.phase is RolloutPhase.ABORTED and result.starts == ()
    aborted = await stored(kv)
    await mirror.pass_once(now)
    assert await stored(kv) == aborted, "aborted once, not again"


@pytest.mark.e2e
async def test_the_operator_process_runs_a_rollout_resource_with_real_agents(
    fleet: KubeFleet,
) -> None:
    for name in ("edge-r1", "edge-r2"):
        await started(fleet, name)
    await publish(fleet, "2.0.0")
    await create_rollout(
        fleet.kube,
        "spring",
        {
            "version": "2.0.0",
            "canary": 1,
            "maxInFlight": 1,
            "soakSeconds": 0,
            "spreadSeconds": 0,
            "timeouts": {"watchSeconds": 3, "holdSeconds": 60},
        },
    )

    def done() -> bool:
        shown = columns(fleet.kube.rollout("spring"))
        return (shown["Phase"], shown["Done"], shown["Pending"]) == ("Done", 2, 0)

    await reflected(fleet, done, "kubectl get rollouts: Done, 2 done, 0 pending", timeout=120)
    for name in ("edge-r1", "edge-r2"):
        await eventually(
            lambda n=name: (
                (seen := fleet.monitor.devices.get(n)) is not None
                and seen.last is not None
                and seen.last.agent_version == "2.0.0"
            ),
            timeout=30,
            what=f"{name} heartbeating on 2.0.0",
        )
    assert columns(fleet.kube.rollout("spring"))["Failed"] == 0
