"""The Kubernetes mode with ``--tuf-root``: ``spec.agentVersion`` is looked up in the signed
release repository (verified by ngclient from the pinned root, over the real server): a version
nobody signed is an ``UnknownRelease`` verdict, a signed one becomes a marker with the signed
SHA-256 and length. Without a root the Kubernetes mode does not start (the flag is named)."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.operator.kubernetes.decisions import Trigger
from harmony_fleet.operator.kubernetes.handlers import SpecHandling
from harmony_fleet.operator.kubernetes.statuses import SpecVerdict
from harmony_fleet.operator.registry import Registry
from harmony_fleet.operator.releases import SignedReleases
from harmony_fleet.testing.releases import LocalReleases


async def test_versions_resolve_through_signed_metadata_only(
    nc: NatsClient, tmp_path: Path
) -> None:
    releases = LocalReleases.init(tmp_path / "repo")
    nothing_yet = SignedReleases(nc, releases.trust_root, tmp_path / "early")
    assert await nothing_yet("2.0.0") is None  # nothing published: unknown, not an error
    artifact = tmp_path / "agent.pyz"
    artifact.write_bytes(b"agent 2.0.0 bytes")
    signed = await releases.publish(nc, artifact, "2.0.0")
    verdicts: dict[str, SpecVerdict] = {}
    handling = SpecHandling(
        nc=nc,
        registry=Registry(),
        namespace="ns",
        on_verdict=verdicts.__setitem__,
        on_gone=lambda _name: None,
        releases=SignedReleases(nc, releases.trust_root, tmp_path / "operator"),
    )

    with pytest.raises(kopf.TemporaryError, match=r"fleet release publish ARTIFACT --version 3"):
        await handling.reconcile("edge-1", {"agentVersion": "3.0.0"}, Trigger.CHANGE)
    assert verdicts["edge-1"].reason.value == "UnknownRelease"
    assert await (await FleetKV(nc).markers()).get("edge-1") is None

    await handling.reconcile("edge-1", {"agentVersion": "2.0.0"}, Trigger.CHANGE)
    entry = await (await FleetKV(nc).markers()).get("edge-1")
    assert entry is not None
    marker = entry.value
    assert (marker.target_version, marker.sha256, marker.size) == (
        "2.0.0",
        signed.sha256,
        len(b"agent 2.0.0 bytes"),
    )
    assert marker.artifact_url == ""  # the device fetches the verified target itself
