"""The reflector and the API adapter against the emulator, with an in-process registry (no NATS,
no kopf): what it writes, that a steady fleet and a restarted operator write nothing more, and
that a Device deleted by hand comes back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from harmony_fleet.contracts import Heartbeat, Role, new_instance_id
from harmony_fleet.errors import NotFound
from harmony_fleet.operator.kubernetes.api import DeviceApi, load_configuration
from harmony_fleet.operator.kubernetes.reflector import Reflector
from harmony_fleet.operator.kubernetes.resources import SpecReason
from harmony_fleet.operator.kubernetes.statuses import SpecVerdict
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from tests.kubernetes.conftest import Cluster
from tests.kubernetes.support import condition, delete_device, status_of


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[DeviceApi]:
    cfg = await load_configuration(str(cluster.kubeconfig))
    async with client.ApiClient(cfg) as api_client:
        yield DeviceApi(api_client, cluster.namespace)


def seen(operator: Operator, device: str, version: str = "1.0.0") -> None:
    operator.registry.observe(
        Heartbeat(
            device_id=device,
            instance_id=new_instance_id(),
            agent_version=version,
            role=Role.MAIN,
            seq=1,
            sent_at=0.0,
            uptime_s=0.0,
            interval_s=1.0,
        ),
        time.time(),
    )


def writes(cluster: Cluster) -> int:
    return sum(1 for q in cluster.emulator if q.method in ("POST", "PATCH"))


async def test_writes_once_then_nothing_even_after_a_restart(
    cluster: Cluster, api: DeviceApi
) -> None:
    operator = Operator(OperatorConfig())
    seen(operator, "edge-a")
    seen(operator, "edge-b", "1.1.0")
    reflector = Reflector(operator, api)
    await reflector.pass_once()
    assert api.creates == 2 and api.patches == 2
    assert status_of(cluster.device("edge-b"))["currentVersion"] == "1.1.0"
    assert cluster.device("edge-a")["metadata"]["resourceVersion"]  # type: ignore[index]

    before = writes(cluster)
    await reflector.pass_once()
    await reflector.pass_once()
    assert writes(cluster) == before, "a steady fleet must cost no API writes"

    restarted = Reflector(operator, DeviceApi(api._api.api_client, api.namespace))
    await restarted.pass_once()
    assert writes(cluster) == before, "a restarted operator must not rewrite what is right"


async def test_a_verdict_is_shown_and_a_deleted_device_comes_back(
    cluster: Cluster, api: DeviceApi
) -> None:
    operator = Operator(OperatorConfig())
    seen(operator, "edge-a")
    reflector = Reflector(operator, api)
    await reflector.pass_once()
    reflector.set_verdict(
        "edge-a", SpecVerdict(valid=False, reason=SpecReason.UNKNOWN_RELEASE, message="no 9")
    )
    await reflector.pass_once()
    spec = condition(cluster.device("edge-a"), "SpecValid")
    assert spec is not None and (spec["status"], spec["reason"]) == ("False", "UnknownRelease")
    online_at = condition(cluster.device("edge-a"), "Online")["lastTransitionTime"]  # type: ignore[index]

    # Deleted by hand; kopf reports it (forget): created again on the next pass.
    await delete_device(cluster, "edge-a")
    reflector.forget("edge-a")
    await reflector.pass_once()
    again = cluster.device("edge-a")
    assert again is not None and status_of(again)["currentVersion"] == "1.0.0"
    assert condition(again, "Online")["lastTransitionTime"] >= online_at  # type: ignore[index]
    assert condition(again, "SpecValid") is None, "a new Device has had no verdict yet"

    # Deleted while nobody reported it: the next list notices.
    await delete_device(cluster, "edge-a")
    await reflector.pass_once()
    assert cluster.device("edge-a") is None
    reflector.resync_s = 0.0
    await reflector.pass_once()
    assert cluster.device("edge-a") is not None


async def test_the_adapter_maps_api_errors(api: DeviceApi) -> None:
    with pytest.raises(NotFound):
        await api.patch_status("ghost", {"status": {}})
    assert await api.create("edge-c") is True
    assert await api.create("edge-c") is False  # 409: already there, not an error
