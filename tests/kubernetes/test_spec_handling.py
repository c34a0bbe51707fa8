"""The spec handlers' logic against a real NATS (no API server needed): the release catalogue,
marker writes through the fleet-KV layer's compare-and-set ``write_marker``, and the no-rewrite
rules that make duplicate handler calls and operator restarts safe. Also ``fleet release``."""

from __future__ import annotations

import json
import time
from typing import Any

import kopf
import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.cli.release_catalogue import publish, releases
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
)
from harmony_fleet.contracts.releases import Release
from harmony_fleet.errors import Refused
from harmony_fleet.operator.kubernetes.decisions import Trigger
from harmony_fleet.operator.kubernetes.handlers import SpecHandling
from harmony_fleet.operator.kubernetes.statuses import SpecVerdict
from harmony_fleet.operator.registry import Registry
from tests.helpers import run_fleet

SHA = "e" * 64


def release(version: str = "2.0.0", sha: str = SHA) -> Release:
    return Release(
        version=version,
        artifact_url=f"http://artifacts/agent-{version}.pyz",
        sha256=sha,
        size=10,
        published_at=time.time(),
    )


class Spy:
    def __init__(self) -> None:
        self.verdicts: dict[str, SpecVerdict] = {}
        self.gone: list[str] = []

    def verdict(self, name: str, v: SpecVerdict) -> None:
        self.verdicts[name] = v


def handling(nc: NatsClient, spy: Spy) -> SpecHandling:
    return SpecHandling(
        nc=nc,
        registry=Registry(),
        namespace="ns",
        on_verdict=spy.verdict,
        on_gone=spy.gone.append,
    )


async def marker_of(nc: NatsClient, device: str) -> UpgradeMarker | None:
    entry = await (await FleetKV(nc).markers()).get(device)
    return entry.value if entry is not None else None


async def test_unknown_release_then_published_then_no_rewrite(nc: NatsClient) -> None:
    spy = Spy()
    h = handling(nc, spy)
    with pytest.raises(
        kopf.TemporaryError, match=r"fleet release catalogue publish --version 2\.0\.0"
    ):
        await h.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    assert spy.verdicts["edge-1"].reason.value == "UnknownRelease"
    assert await marker_of(nc, "edge-1") is None

    assert await publish(nc, release()) == "created"
    await h.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    first = await marker_of(nc, "edge-1")
    assert first is not None
    assert (first.target_version, first.sha256) == ("2.0.0", SHA)
    assert first.artifact_url == "http://artifacts/agent-2.0.0.pyz"
    assert first.requested_by == "kubernetes:ns/edge-1"
    assert spy.verdicts["edge-1"].valid

    # kopf calling the create handler twice, and a restart (resume): the marker stays.
    await h.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    await handling(nc, spy).reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.RESUME)
    again = await marker_of(nc, "edge-1")
    assert again == first and h.markers_written == 1
    assert "already in flight" in spy.verdicts["edge-1"].message


async def test_a_failed_upgrade_is_retried_only_when_asked_again(nc: NatsClient) -> None:
    spy = Spy()
    h = handling(nc, spy)
    await publish(nc, release())
    await h.reconcile("edge-2", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    first = await marker_of(nc, "edge-2")
    assert first is not None
    statuses = await FleetKV(nc).statuses()
    await statuses.put(
        "edge-2",
        UpgradeStatus(
            upgrade_id=first.upgrade_id,
            device_id="edge-2",
            phase=AgentUpgradePhase.FAILED,
            from_version="1.0.0",
            to_version="2.0.0",
            instance_id="1" * 32,
            error_code="self_test_failed",
            started_at=time.time(),
            updated_at=time.time(),
        ),
    )
    await h.reconcile("edge-2", {"agentVersion": "2.0.0"}, Trigger.RESUME)
    assert await marker_of(nc, "edge-2") == first, "a restart must not retry a failed upgrade"
    await h.reconcile("edge-2", {"agentVersion": "2.0.0", "force": True}, Trigger.CHANGE)
    retry = await marker_of(nc, "edge-2")
    assert retry is not None and retry.upgrade_id != first.upgrade_id and retry.force


async def test_invalid_specs_are_permanent_and_say_why(nc: NatsClient) -> None:
    spy = Spy()
    h = handling(nc, spy)
    with pytest.raises(kopf.PermanentError, match="not a valid version"):
        await h.reconcile("edge-3", {"agentVersion": "../../etc"}, Trigger.CHANGE)
    assert spy.verdicts["edge-3"].reason.value == "InvalidVersion"
    assert await h.reconcile("edge-3", {}, Trigger.CHANGE) == "no desired version"
    assert spy.verdicts["edge-3"].reason.value == "NoDesiredVersion"
    assert await marker_of(nc, "edge-3") is None


async def test_releases_are_immutable_unless_replaced(nc: NatsClient) -> None:
    assert await publish(nc, release()) == "created"
    assert await publish(nc, release()) == "unchanged"
    with pytest.raises(Refused, match="already published with another artifact"):
        await publish(nc, release(sha="f" * 64))
    assert await publish(nc, release(sha="f" * 64), replace=True) == "replaced"
    await publish(nc, release("2.0.0+b7"))
    assert [(r.version, r.sha256[0]) for r in await releases(nc)] == [
        ("2.0.0", "f"),
        ("2.0.0+b7", "e"),
    ]


def test_the_catalogue_commands(nats_server: Any) -> None:
    url = nats_server.url
    args = ["--nats", url, "--version", "3.0.0", "--url", "http://a/x", "--sha256", "A" * 64]
    done = run_fleet("release", "catalogue", "publish", *args)
    assert done.returncode == 0 and "release 3.0.0: created" in done.stdout, done.stderr
    refused = run_fleet("release", "catalogue", "publish", *args[:-1], "b" * 64)
    assert refused.returncode == 4 and "--replace" in refused.stderr
    bad = run_fleet("release", "catalogue", "publish", *args[:-1], "nothex")
    assert bad.returncode == 2
    listed = run_fleet("release", "catalogue", "list", "--nats", url, "--json")
    assert listed.returncode == 0
    [only] = json.loads(listed.stdout)
    assert only["version"] == "3.0.0" and only["sha256"] == "a" * 64
