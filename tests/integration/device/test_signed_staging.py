"""Staging on signed releases: the marker is a pointer, the verified target is the trust.

``AgentFiles`` over a real disk with a fake ``ReleaseTrust`` (the seam ``core.upgrade.trust``
names; the real one is exercised against the server in tests/security/test_tuf_*.py).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.contracts import UpgradeMarker
from harmony_fleet.contracts.ids import Version
from harmony_fleet.core.upgrade.trust import SignedRelease, target_path
from harmony_fleet.errors import IntegrityError, Untrusted

OLD, NEW = "1.0.0", "2.0.0"
BODY = b"signed agent 2.0.0"


class FakeTrust:
    """Signs ``BODY`` as 2.0.0 (from NATS: no URL); counts lookups and fetches."""

    def __init__(self, *, min_version: str = "", refuse: Untrusted | None = None) -> None:
        self.release = SignedRelease(
            path=target_path(NEW),
            version=NEW,
            length=len(BODY),
            sha256=hashlib.sha256(BODY).hexdigest(),
            min_version=min_version,
        )
        self.refuse = refuse
        self.fetched = 0

    async def verify(self, version: str) -> SignedRelease:
        if self.refuse is not None:
            raise self.refuse
        assert version == NEW
        return self.release

    async def fetch(self, release: SignedRelease, dest: Path) -> None:
        self.fetched += 1
        dest.write_bytes(BODY)


def _marker() -> UpgradeMarker:
    """A marker whose URL and hash are wrong: hints only, never the trust."""
    return UpgradeMarker(
        upgrade_id="u-signed-1",
        device_id="edge-1",
        target_version=NEW,
        artifact_url="https://evil.example/agent.pyz",
        sha256="0" * 64,
        size=1,
        requested_at=time.time(),
    )


def _files(tmp_path: Path, trust: FakeTrust | None) -> AgentFiles:
    layout = AgentLayout(tmp_path / "prefix")
    layout.version_dir(OLD).mkdir(parents=True)
    (layout.version_dir(OLD) / "agent").write_bytes(b"old agent")
    layout.swap_current(OLD)
    return AgentFiles(layout, running_version=OLD, run_dir=tmp_path / "run", trust=trust)


async def test_the_verified_target_is_staged_whatever_the_marker_says(tmp_path: Path) -> None:
    trust = FakeTrust()
    files = _files(tmp_path, trust)
    await files.stage(_marker(), lambda _p: None)
    assert files.layout.artifact(Version(NEW)).read_bytes() == BODY
    assert trust.fetched == 1
    await files.verify_staged(Version(NEW))  # unchanged: passes


async def test_staged_bytes_changed_before_the_self_test_are_caught(tmp_path: Path) -> None:
    files = _files(tmp_path, FakeTrust())
    await files.stage(_marker(), lambda _p: None)
    files.layout.artifact(Version(NEW)).write_bytes(b"swapped after staging")
    with pytest.raises(IntegrityError):
        await files.verify_staged(Version(NEW))


async def test_without_a_trust_root_a_download_is_refused(tmp_path: Path) -> None:
    files = _files(tmp_path, None)
    with pytest.raises(Untrusted, match=r"^no trust root") as caught:
        await files.stage(_marker(), lambda _p: None)
    assert caught.value.reason == "no trust root"
    assert not files.layout.has_version(Version(NEW))


async def test_a_refusal_of_the_metadata_stages_nothing(tmp_path: Path) -> None:
    files = _files(tmp_path, FakeTrust(refuse=Untrusted("bad signature", "targets")))
    with pytest.raises(Untrusted, match=r"^bad signature"):
        await files.stage(_marker(), lambda _p: None)
    assert not files.layout.has_version(Version(NEW))
    assert not files.layout.staging_dir(Version(NEW)).exists()


async def test_a_target_signed_only_for_newer_devices_is_refused(tmp_path: Path) -> None:
    files = _files(tmp_path, FakeTrust(min_version="1.5.0"))
    with pytest.raises(Untrusted, match=r"^below min_version"):
        await files.stage(_marker(), lambda _p: None)
