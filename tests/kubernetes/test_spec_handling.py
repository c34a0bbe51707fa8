"""The spec handlers' logic against a real NATS (no API server needed): versions resolved
through the signed release repository (made and published by the release tooling), marker
writes through the fleet-KV layer's compare-and-set ``write_marker``, and the no-rewrite rules
that make duplicate handler calls and operator restarts safe."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import kopf
import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
)
from harmony_fleet.operator.kubernetes.decisions import Trigger
from harmony_fleet.operator.kubernetes.handlers import SpecHandling
from harmony_fleet.operator.kubernetes.statuses import SpecVerdict
from harmony_fleet.operator.registry import Registry
from harmony_fleet.operator.releases import SignedReleases
from harmony_fleet.testing.releases import LocalReleases

AGENT = b"agent 2.0.0"
SHA = hashlib.sha256(AGENT).hexdigest()


@pytest.fixture
def releases(tmp_path: Path) -> LocalReleases:
    """A release repository as ``fleet release init`` makes it."""
    return LocalReleases.init(tmp_path / "repo")


async def publish(nc: NatsClient, releases: LocalReleases, tmp_path: Path) -> None:
    """``fleet release publish`` of 2.0.0 (the bytes :data:`AGENT`)."""
    artifact = tmp_path / "agent.pyz"
    artifact.write_bytes(AGENT)
    await releases.publish(nc, artifact, "2.0.0")


class Spy:
    def __init__(self) -> None:
        self.verdicts: dict[str, SpecVerdict] = {}
        self.gone: list[str] = []

    def verdict(self, name: str, v: SpecVerdict) -> None:
        self.verdicts[name] = v


def handling(nc: NatsClient, spy: Spy, releases: LocalReleases, state: Path) -> SpecHandling:
    return SpecHandling(
        nc=nc,
        registry=Registry(),
        namespace="ns",
        on_verdict=spy.verdict,
        on_gone=spy.gone.append,
        releases=SignedReleases(nc, releases.trust_root, state),
    )


async def marker_of(nc: NatsClient, device: str) -> UpgradeMarker | None:
    entry = await (await FleetKV(nc).markers()).get(device)
    return entry.value if entry is not None else None


async def test_unknown_release_then_published_then_no_rewrite(
    nc: NatsClient, releases: LocalReleases, tmp_path: Path
) -> None:
    spy = Spy()
    h = handling(nc, spy, releases, tmp_path / "operator")
    with pytest.raises(
        kopf.TemporaryError, match=r"fleet release publish ARTIFACT --version 2\.0\.0"
    ):
        await h.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    assert spy.verdicts["edge-1"].reason.value == "UnknownRelease"
    assert await marker_of(nc, "edge-1") is None

    await publish(nc, releases, tmp_path)
    await h.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    first = await marker_of(nc, "edge-1")
    assert first is not None
    assert (first.target_version, first.sha256) == ("2.0.0", SHA)
    assert (first.artifact_url, first.size) == ("", len(AGENT))  # the device fetches the target
    assert first.requested_by == "kubernetes:ns/edge-1"
    assert spy.verdicts["edge-1"].valid

    # kopf calling the create handler twice, and a restart (resume): the marker stays.
    await h.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    restarted = handling(nc, spy, releases, tmp_path / "operator")
    await restarted.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.RESUME)
    again = await marker_of(nc, "edge-1")
    assert again == first and h.markers_written == 1
    assert "already in flight" in spy.verdicts["edge-1"].message


async def test_a_failed_upgrade_is_retried_only_when_asked_again(
    nc: NatsClient, releases: LocalReleases, tmp_path: Path
) -> None:
    spy = Spy()
    h = handling(nc, spy, releases, tmp_path / "operator")
    await publish(nc, releases, tmp_path)
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


async def test_invalid_specs_are_permanent_and_say_why(
    nc: NatsClient, releases: LocalReleases, tmp_path: Path
) -> None:
    spy = Spy()
    h = handling(nc, spy, releases, tmp_path / "operator")
    with pytest.raises(kopf.PermanentError, match="not a valid version"):
        await h.reconcile("edge-3", {"agentVersion": "../../etc"}, Trigger.CHANGE)
    assert spy.verdicts["edge-3"].reason.value == "InvalidVersion"
    assert await h.reconcile("edge-3", {}, Trigger.CHANGE) == "no desired version"
    assert spy.verdicts["edge-3"].reason.value == "NoDesiredVersion"
    assert await marker_of(nc, "edge-3") is None
