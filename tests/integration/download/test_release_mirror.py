"""Signed releases from an HTTP(S) mirror: ngclient reads ``<base>/metadata/``, the resumable
downloader fetches ``<base>/targets/<sha256>.<path>`` with the signed length and hash.

A real HTTP server on loopback (pytest-httpserver) serves a repository signed with python-tuf's
Metadata API (``harmony_fleet.testing.signed_repo``); the device's files (``AgentFiles``) stage
through the real client (``adapters.tuf.client.TrustedReleases``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.http.urls import ArtifactAccess
from harmony_fleet.adapters.tuf.client import TrustedReleases
from harmony_fleet.adapters.tuf.pin import pin_root
from harmony_fleet.contracts import UpgradeMarker
from harmony_fleet.contracts.ids import Version
from harmony_fleet.errors import DownloadRejected, Untrusted
from harmony_fleet.testing.signed_repo import Repo

OLD, NEW = "1.0.0", "2.0.0"
BODY = b"mirrored agent 2.0.0 " * 1000


def _serve(server: HTTPServer, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        server.expect_request(path).respond_with_data(data)


def _device(tmp_path: Path, repo: Repo, base: str) -> AgentFiles:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "root.json").write_bytes(repo.root_json())
    pin_root(state, tmp_path / "root.json")
    layout = AgentLayout(tmp_path / "prefix")
    layout.version_dir(OLD).mkdir(parents=True)
    (layout.version_dir(OLD) / "agent").write_bytes(b"old agent")
    layout.swap_current(OLD)
    trust = TrustedReleases(state, mirror=base)
    return AgentFiles(layout, running_version=OLD, run_dir=tmp_path / "run", trust=trust)


def _marker() -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id="u-mirror-1",
        device_id="edge-1",
        target_version=NEW,
        artifact_url="",
        sha256="",
        requested_at=time.time(),
    )


@pytest.mark.parametrize("tamper", [None, "other bytes", "longer"])
async def test_a_mirror_serves_the_signed_target_and_nothing_else(
    httpserver: HTTPServer, tmp_path: Path, tamper: str | None
) -> None:
    repo = Repo()
    repo.add(NEW, BODY)
    release = repo.release()
    (name,) = repo.artifacts
    served = {"other bytes": b"X" * len(BODY), "longer": BODY + b"\0" * 100_000}.get(
        tamper or "", BODY
    )
    _serve(
        httpserver,
        {
            "/metadata/1.root.json": repo.root_json(),
            **{f"/metadata/{k}": v for k, v in release.items()},
            f"/targets/{name}": served,
        },
    )
    httpserver.expect_request("/metadata/2.root.json").respond_with_data("", status=404)
    files = _device(tmp_path, repo, httpserver.url_for("/"))
    if tamper is None:
        await files.stage(_marker(), lambda _p: None)
        assert files.layout.artifact(Version(NEW)).read_bytes() == BODY
        return
    reason = "hash mismatch" if tamper == "other bytes" else "length exceeded"
    with pytest.raises(Untrusted, match=f"^{reason}"):
        await files.stage(_marker(), lambda _p: None)
    assert not files.layout.has_version(Version(NEW))


def test_a_plain_http_mirror_off_this_machine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadRejected, match="allow-http-artifacts"):
        TrustedReleases(tmp_path, mirror="http://mirror.example/releases")
    TrustedReleases(
        tmp_path, mirror="http://mirror.example/r", access=ArtifactAccess(allow_http=True)
    )
