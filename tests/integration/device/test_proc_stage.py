"""AgentFiles.stage against a real HTTP server, with real artifacts, on real folders."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pytest
from proc_support import NEW, OLD, Built, marker, tree
from pytest_httpserver import HTTPServer

from conftest import ProcDevice
from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.contracts.ids import Version
from harmony_fleet.contracts.upgrade import Progress
from harmony_fleet.core.upgrade.device import staging_error_code
from harmony_fleet.core.upgrade.states import ErrorCode
from harmony_fleet.errors import DownloadRejected, HTTPStatusError, IntegrityError

PATH = f"/artifacts/{NEW}"


def outside_staging(entries: dict[str, str], v: str) -> dict[str, str]:
    """The tree without what staging ``v`` may leave until cleanup (its folder and note)."""
    mine = (f"versions/.staging-{v}", f"versions/.owner-{v}")
    return {k: h for k, h in entries.items() if not k.startswith(mine)}


async def test_stage_puts_the_verified_executable_artifact_into_versions(
    device: ProcDevice,
    layout: AgentLayout,
    httpserver: HTTPServer,
    artifact: Callable[[str], Built],
) -> None:
    new = artifact(NEW)
    httpserver.expect_request(PATH).respond_with_data(new.body)
    seen: list[Progress] = []

    await device.files.stage(marker(new, httpserver.url_for(PATH)), seen.append)

    staged = layout.version_dir(NEW) / "agent"
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == new.manifest.sha256
    assert os.access(staged, os.X_OK)
    assert sorted(p.name for p in layout.version_dir(NEW).iterdir()) == ["agent"]
    assert not layout.staging_dir(NEW).exists()
    assert layout.current_version() == OLD, "staging never moves current"
    assert seen and seen[-1].bytes_done == new.manifest.size
    assert seen[-1].bytes_total == new.manifest.size

    # Staged again (a restarted agent resuming): verified in place, nothing fetched.
    requests = len(httpserver.log)
    await device.files.stage(marker(new, httpserver.url_for(PATH)), seen.append)
    assert len(httpserver.log) == requests


async def test_checksum_mismatch_changes_nothing_outside_staging(
    device: ProcDevice,
    layout: AgentLayout,
    httpserver: HTTPServer,
    artifact: Callable[[str], Built],
) -> None:
    new = artifact(NEW)
    httpserver.expect_request(PATH).respond_with_data(new.body)
    before = tree(layout.prefix)

    with pytest.raises(IntegrityError) as caught:
        await device.files.stage(
            marker(new, httpserver.url_for(PATH), sha256="0" * 64), lambda p: None
        )

    assert staging_error_code(caught.value) is ErrorCode.INTEGRITY
    assert outside_staging(tree(layout.prefix), NEW) == before
    assert not layout.has_version(NEW)
    await device.files.cleanup_staging(Version(NEW))
    assert tree(layout.prefix) == before


async def test_http_404_is_rejected_and_cleaned_up(
    device: ProcDevice,
    layout: AgentLayout,
    httpserver: HTTPServer,
    artifact: Callable[[str], Built],
) -> None:
    httpserver.expect_request(PATH).respond_with_data(b"no such artifact", status=404)
    before = tree(layout.prefix)

    with pytest.raises(HTTPStatusError) as caught:
        await device.files.stage(marker(artifact(NEW), httpserver.url_for(PATH)), lambda p: None)

    assert caught.value.status == 404
    assert staging_error_code(caught.value) is ErrorCode.DOWNLOAD_REJECTED
    assert outside_staging(tree(layout.prefix), NEW) == before
    await device.files.cleanup_staging(Version(NEW))
    assert tree(layout.prefix) == before


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/agent"])
async def test_a_url_that_is_not_http_is_a_rejected_download(
    device: ProcDevice, layout: AgentLayout, artifact: Callable[[str], Built], url: str
) -> None:
    """Reported as ``download_rejected`` (the request was wrong), not as a staging failure."""
    before = tree(layout.prefix)

    with pytest.raises(DownloadRejected) as caught:
        await device.files.stage(marker(artifact(NEW), url), lambda p: None)

    assert staging_error_code(caught.value) is ErrorCode.DOWNLOAD_REJECTED
    assert "not an http(s) URL" in str(caught.value)
    assert outside_staging(tree(layout.prefix), NEW) == before
