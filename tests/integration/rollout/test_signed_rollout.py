"""A rollout's version is resolved through the signed release metadata (``fleet operator
--tuf-root``): the canaries' markers carry the signed SHA-256 and length, and a version nobody
signed starts nobody. An operator given no root resolves no version: each pass says which flag
is missing, and no marker is written."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from tests.integration.rollout.test_drive_once import DEVICES, NEW, _setup

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.contracts import DeviceState, Share
from harmony_fleet.errors import ConfigError
from harmony_fleet.operator.releases import SignedReleases, release_lookup
from harmony_fleet.operator.rollouts import drive_all, drive_once
from harmony_fleet.testing.releases import LocalReleases


async def test_a_rollout_starts_devices_on_the_signed_target_only(
    nc: NatsClient, tmp_path: Path
) -> None:
    kv = FleetKV(nc)
    now = time.time()
    await _setup(kv, now)
    releases = LocalReleases.init(tmp_path / "repo")
    lookup = SignedReleases(nc, releases.trust_root, tmp_path / "operator")

    unsigned = await drive_once(kv, "spring", now=now, releases=lookup)
    assert unsigned.starts, "the engine picked its canaries"
    for start in unsigned.starts:  # ... but nothing signed is 2.0.0 yet: no marker written
        assert await (await kv.markers()).get(start.device_id) is None

    artifact = tmp_path / "agent.pyz"
    artifact.write_bytes(b"agent 2.0.0, signed")
    signed = await releases.publish(nc, artifact, NEW)
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


async def test_an_operator_without_a_root_starts_nobody_and_names_the_flag(
    nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    kv = FleetKV(nc)
    now = time.time()
    await _setup(kv, now)
    lookup = release_lookup(nc, None, Path("unused"))
    with pytest.raises(ConfigError, match="--tuf-root"):
        await drive_once(kv, "spring", now=now, releases=lookup)
    with caplog.at_level(logging.WARNING, logger="harmony_fleet.operator.rollouts"):
        plans = await drive_all(kv, now=now, releases=lookup)
    assert plans == {}
    assert any("--tuf-root" in r.getMessage() for r in caplog.records), caplog.text
    assert await (await kv.markers()).keys() == []


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
