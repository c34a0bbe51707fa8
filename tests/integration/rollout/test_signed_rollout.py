"""A rollout's version is resolved through the signed release metadata when the operator holds
the repository's root (``fleet operator --tuf-root``): the canaries' markers carry the signed
SHA-256 and length, an unsigned catalogue entry for the same version is not what they carry,
and a version nobody signed starts nobody."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.rollout.test_drive_once import DEVICES, NEW, SHA_NEW, _setup

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.contracts import DeviceState, Share
from harmony_fleet.operator.releases import SignedReleases
from harmony_fleet.operator.rollouts import drive_once
from harmony_fleet.testing.releases import LocalReleases


async def test_a_rollout_starts_devices_on_the_signed_target_only(
    nc: NatsClient, tmp_path: Path
) -> None:
    kv = FleetKV(nc)
    now = time.time()
    await _setup(kv, now)  # also puts an unsigned catalogue entry for NEW (sha SHA_NEW)
    releases = LocalReleases.init(tmp_path / "repo")
    lookup = SignedReleases(nc, releases.trust_root, tmp_path / "operator")

    unsigned = await drive_once(kv, "spring", now=now, releases=lookup)
    assert unsigned.starts, "the engine picked its canaries"
    for start in unsigned.starts:  # ... but nothing signed is 2.0.0 yet: no marker written
        assert await (await kv.markers()).get(start.device_id) is None

    artifact = tmp_path / "agent.pyz"
    artifact.write_bytes(b"agent 2.0.0, signed")
    signed = await releases.publish(nc, artifact, NEW)
    assert signed.sha256 != SHA_NEW
    again = await drive_once(kv, "spring", now=now + 1, releases=lookup)
    started = {s.device_id for s in (*unsigned.starts, *again.starts)}
    for device in started:
        entry = await (await kv.markers()).get(device)
        assert entry is not None, device
        marker = entry.value
        assert (marker.target_version, marker.sha256, marker.size) == (
            NEW,
            signed.sha256,
            len(b"agent 2.0.0, signed"),
        )


async def test_the_versions_signed_skip_list_keeps_its_devices_out_with_the_reason(
    nc: NatsClient, tmp_path: Path
) -> None:
    kv = FleetKV(nc)
    now = time.time()
    # every device in one wave after one canary; odd devices are amd64 (_setup)
    await _setup(kv, now, canary=Share(count=1), max_in_flight=Share(count=8))
    releases = LocalReleases.init(tmp_path / "repo")
    artifact = tmp_path / "agent.pyz"
    artifact.write_bytes(b"agent 2.0.0, signed")
    await releases.publish(nc, artifact, NEW, skip=("arch=amd64", DEVICES[0]))
    lookup = SignedReleases(nc, releases.trust_root, tmp_path / "operator")

    result = await drive_once(kv, "spring", now=now, releases=lookup)
    skipped = {d for d, (state, _) in result.states.items() if state is DeviceState.SKIPPED}
    assert skipped == {DEVICES[0], *DEVICES[1::2]}
    assert result.states[DEVICES[0]][1] == f"gate:skip_list {DEVICES[0]}"
    assert result.states[DEVICES[1]][1] == "gate:skip_list arch=amd64"
    assert {s.device_id for s in result.starts} <= set(DEVICES[2::2])
    for device in skipped:  # reported, never attempted
        assert await (await kv.markers()).get(device) is None
