"""Artifact transport with real agent processes (LocalFleet: TLS, one credential per device,
signed releases): the signed repository read over HTTP(S) from a mirror (``fleet agent run
--release-mirror``), where the artifacts' transport rules hold.

A device whose mirror is plain ``http`` on another host refuses the upgrade before it downloads
anything: the status says why in one line and the device keeps running its version. From a
loopback mirror (allowed) a signed target missing from the mirror is a 404, reported as such;
the token in the marker's URL (a hint only, never fetched) reaches none of: the agent's log
file, the logs it ships to ``FLEET_LOGS``, the status in KV. Once the mirror has the target,
the same device upgrades through it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.fleet_kv import write_marker
from harmony_fleet.contracts import UpgradeMarker, new_upgrade_id
from harmony_fleet.contracts.logs import device_logs
from harmony_fleet.testing.artifact_server import ArtifactServer
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.conftest import INTERVAL
from tests.e2e.support import DEV, QUICK, P, reaches, started
from tests.fleets import Built, build_versions
from tests.helpers import eventually
from tests.security.support import local_fleet

SECRET = "S3CR3T-T0KEN-0f9a"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, ("1.0.0", "2.0.0"))


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[LocalFleet]:
    async with local_fleet(tmp_path / "fleet", built, INTERVAL) as f:
        yield f


async def _ask(fleet: LocalFleet, url: str) -> UpgradeMarker:
    """A marker for the published 2.0.0 whose URL (a hint) is ``url``."""
    assert fleet.nc is not None
    await fleet.publish("2.0.0")
    manifest = fleet.artifacts["2.0.0"]
    marker = UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=DEV,
        target_version="2.0.0",
        artifact_url=url,
        sha256=manifest.sha256,
        size=manifest.size,
        requested_at=time.time(),
        requested_by="test",
        timeouts=QUICK,
    )
    await write_marker(fleet.nc, marker)
    return marker


async def _shipped(fleet: LocalFleet) -> list[str]:
    """Every log line of DEV in the log stream so far."""
    assert fleet.nc is not None
    js = fleet.nc.jetstream()
    sub = await js.subscribe(device_logs(DEV), ordered_consumer=True)
    lines: list[str] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            lines.append(msg.data.decode(errors="replace"))
            if msg.metadata.num_pending == 0:
                return lines
    finally:
        await sub.unsubscribe()


async def test_a_plain_http_mirror_on_another_host_is_refused_before_any_download(
    fleet: LocalFleet,
) -> None:
    await started(fleet, release_mirror="http://artifacts.example/release")
    device = fleet.devices[DEV]

    plain = await _ask(fleet, f"https://hint.example/agent-2.0.0.pyz?token={SECRET}")
    status = await reaches(fleet, plain, P.FAILED)
    assert status.error_code == "download_rejected", status
    assert "--allow-http-artifacts" in status.error_detail, status
    assert "http://artifacts.example/release" in status.error_detail, status
    assert "\n" not in status.error_detail
    assert SECRET not in repr(status)
    assert device.layout.current_version() == "1.0.0"
    assert not device.layout.has_version("2.0.0")


async def test_a_target_missing_from_a_loopback_mirror_is_a_404_and_no_token_leaks(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    release = await fleet.publish("2.0.0")
    mirror = fleet.releases.mirror(tmp_path / "mirror")  # metadata only: no target copied yet
    server = ArtifactServer(mirror)
    server.start()
    try:
        await started(fleet, release_mirror=server.base_url)
        device = fleet.devices[DEV]

        missing = await _ask(fleet, f"{fleet.url_of(fleet.artifacts['2.0.0'])}?sig={SECRET}")
        status = await reaches(fleet, missing, P.FAILED)
        assert "404" in status.error_detail and "/targets/" in status.error_detail, status
        assert SECRET not in repr(status)
        assert device.layout.current_version() == "1.0.0"

        log_text = "\n".join(p.read_text() for p in device.run_dir.glob("*.log"))
        assert "404" in log_text and SECRET not in log_text

        async def shipped_the_404() -> list[str] | None:
            lines = await _shipped(fleet)
            return lines if any("404" in line for line in lines) else None

        shipped = await eventually(shipped_the_404, timeout=30, what="the 404 in the shipped logs")
        assert not [line for line in shipped if SECRET in line]

        # the mirror gets the target: the same device upgrades through it
        (mirror / "targets").mkdir(exist_ok=True)
        artifact = fleet.artifact_dir / fleet.artifacts["2.0.0"].file
        shutil.copyfile(artifact, mirror / "targets" / release.object_name)
        again = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK, force=True)
        done = await reaches(fleet, again, P.SUCCEEDED, P.FAILED, P.ROLLED_BACK)
        assert done.phase is P.SUCCEEDED, (done.error_code, done.error_detail)
        assert device.layout.current_version() == "2.0.0"
    finally:
        server.stop()
