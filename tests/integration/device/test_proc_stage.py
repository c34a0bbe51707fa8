"""AgentFiles.stage with real artifacts on real folders, every download a target verified
against the signed mirror (the release tooling's repository over real HTTP): the marker's URL
and hash are hints, never fetched."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from proc_support import NEW, OLD, Built, SignedMirror, marker, tree

from conftest import ProcDevice
from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.contracts.ids import Version
from harmony_fleet.contracts.upgrade import Progress
from harmony_fleet.core.upgrade.device import staging_error_code
from harmony_fleet.core.upgrade.states import ErrorCode
from harmony_fleet.errors import DownloadRejected, HTTPStatusError, Untrusted


def outside_staging(entries: dict[str, str], v: str) -> dict[str, str]:
    """The tree without what staging ``v`` may leave until cleanup (its folder and note)."""
    mine = (f"versions/.staging-{v}", f"versions/.owner-{v}")
    return {k: h for k, h in entries.items() if not k.startswith(mine)}


async def test_stage_puts_the_verified_executable_artifact_into_versions(
    device: ProcDevice,
    layout: AgentLayout,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
) -> None:
    new = artifact(NEW)
    mirror.sign(NEW, new.body)
    seen: list[Progress] = []

    await device.files.stage(marker(new), seen.append)

    staged = layout.version_dir(NEW) / "agent"
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == new.manifest.sha256
    assert os.access(staged, os.X_OK)
    assert sorted(p.name for p in layout.version_dir(NEW).iterdir()) == ["agent"]
    assert not layout.staging_dir(NEW).exists()
    assert layout.current_version() == OLD, "staging never moves current"
    assert seen and seen[-1].bytes_done == new.manifest.size
    assert seen[-1].bytes_total == new.manifest.size
    assert mirror.target_requests() == 1

    # Staged again (a restarted agent resuming): verified in place, nothing fetched.
    await device.files.stage(marker(new), seen.append)
    assert mirror.target_requests() == 1


async def test_other_bytes_on_the_mirror_change_nothing_outside_staging(
    device: ProcDevice,
    layout: AgentLayout,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
) -> None:
    """A mirror serving other bytes of the signed length (a malicious mirror)."""
    new = artifact(NEW)
    release = mirror.sign(NEW, new.body)
    evil = bytearray(new.body)
    evil[100] ^= 0xFF
    mirror.target(release).write_bytes(bytes(evil))
    before = tree(layout.prefix)

    with pytest.raises(Untrusted) as caught:
        await device.files.stage(marker(new), lambda p: None)

    assert caught.value.reason == "hash mismatch", caught.value
    assert staging_error_code(caught.value) is ErrorCode.UNTRUSTED
    assert outside_staging(tree(layout.prefix), NEW) == before
    assert not layout.has_version(NEW)
    await device.files.cleanup_staging(Version(NEW))
    assert tree(layout.prefix) == before


async def test_http_404_is_rejected_and_cleaned_up(
    device: ProcDevice,
    layout: AgentLayout,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
) -> None:
    """Signed, but the mirror does not have the bytes."""
    new = artifact(NEW)
    mirror.target(mirror.sign(NEW, new.body)).unlink()
    before = tree(layout.prefix)

    with pytest.raises(HTTPStatusError) as caught:
        await device.files.stage(marker(new), lambda p: None)

    assert caught.value.status == 404
    assert staging_error_code(caught.value) is ErrorCode.DOWNLOAD_REJECTED
    assert outside_staging(tree(layout.prefix), NEW) == before
    await device.files.cleanup_staging(Version(NEW))
    assert tree(layout.prefix) == before


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/agent"])
async def test_a_mirror_that_is_not_http_is_a_rejected_download(
    layout: AgentLayout,
    run_dir: Path,
    tmp_path: Path,
    mirror: SignedMirror,
    artifact: Callable[[str], Built],
    url: str,
) -> None:
    """Reported as ``download_rejected`` (the mirror was wrong), not as a staging failure."""
    new = artifact(NEW)
    mirror.sign(NEW, new.body)
    files = AgentFiles(
        layout, running_version=OLD, run_dir=run_dir, trust=mirror.trust(tmp_path / "s", url=url)
    )
    before = tree(layout.prefix)

    with pytest.raises(DownloadRejected) as caught:
        await files.stage(marker(new), lambda p: None)

    assert staging_error_code(caught.value) is ErrorCode.DOWNLOAD_REJECTED
    assert "not an http(s) URL" in str(caught.value)
    assert outside_staging(tree(layout.prefix), NEW) == before
    assert mirror.target_requests() == 0
