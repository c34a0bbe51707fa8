"""The device's files (``adapters/device/files.py``, one for every platform) on real folders
and real HTTP: every download a target verified against a signed mirror (the release tooling's
repository, served by ``pytest-httpserver``; ``proc_support.SignedMirror``).

What both runners rely on: a revert leaves the tree byte-identical (the target folder
removed only if this upgrade created it, known even after a restart through the owner note), a
version installed before is reused and never removed, and the bounded runner reports exit code,
output and timeouts of a real process.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest
from proc_support import HINT, SignedMirror
from pytest_httpserver import HTTPServer

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.process.bounded import run_bounded
from harmony_fleet.contracts import UpgradeMarker, UpgradeTimeouts
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import Progress
from harmony_fleet.errors import IntegrityError, Untrusted

OLD, NEW = "1.0.0", "2.0.0"
BODY = b"#!/usr/bin/env python3\nprint('agent 2.0.0')\n" * 2000


def tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def marker(url: str = HINT, *, uid: str = "u-stage-1", body: bytes = BODY) -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=uid,
        device_id="edge-1",
        target_version=NEW,
        artifact_url=url,
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        requested_at=time.time(),
        timeouts=UpgradeTimeouts(download_s=30),
    )


@pytest.fixture
def mirror(tmp_path: Path, httpserver: HTTPServer) -> SignedMirror:
    """BODY signed as 2.0.0 and on the mirror."""
    signed = SignedMirror(tmp_path / "release", httpserver)
    signed.sign(NEW, BODY)
    return signed


@pytest.fixture
def staging(tmp_path: Path, mirror: SignedMirror) -> AgentFiles:
    layout = AgentLayout(tmp_path / "prefix")
    home = layout.version_dir(OLD)
    home.mkdir(parents=True)
    (home / "agent").write_bytes(b"old agent")
    layout.swap_current(OLD)
    run_dir = layout.prefix.parent / "run"
    trust = mirror.trust(tmp_path / "state")
    return AgentFiles(layout, running_version=OLD, run_dir=run_dir, trust=trust)


async def test_stage_then_revert_restores_the_tree_byte_for_byte(staging: AgentFiles) -> None:
    before = tree(staging.layout.prefix)
    seen: list[Progress] = []
    await staging.stage(marker(), seen.append)
    artifact = staging.layout.artifact(NEW)
    assert artifact.read_bytes() == BODY
    assert os.access(artifact, os.X_OK)
    assert sorted(p.name for p in artifact.parent.iterdir()) == ["agent"]  # no .lock, no .part
    assert seen and seen[-1].bytes_done == len(BODY)
    assert staging.owner_of(NEW) == "u-stage-1"

    # A fresh helper (the agent restarted) still knows this upgrade made versions/2.0.0.
    again = AgentFiles(
        AgentLayout(staging.layout.prefix), running_version=OLD, run_dir=staging.run_dir
    )
    await again.revert(
        upgrade_id=UpgradeId("u-stage-1"), previous=Version(OLD), target=Version(NEW)
    )
    assert tree(staging.layout.prefix) == before


async def test_swap_commits_and_forgets_ownership(staging: AgentFiles) -> None:
    await staging.stage(marker(), lambda _p: None)
    await staging.swap_current(Version(NEW))
    assert await staging.current_version() == NEW
    assert staging.owner_of(NEW) is None
    # cleanup of a committed version removes nothing of it
    await staging.cleanup_staging(Version(NEW))
    assert staging.layout.artifact(NEW).read_bytes() == BODY


async def test_a_version_installed_before_is_reused_and_kept(
    staging: AgentFiles, mirror: SignedMirror
) -> None:
    home = staging.layout.version_dir(NEW)
    home.mkdir()
    (home / "agent").write_bytes(BODY)
    before = tree(staging.layout.prefix)
    await staging.stage(marker(), lambda _p: None)
    assert mirror.target_requests() == 0, "an installed, matching version is not downloaded"
    await staging.revert(
        upgrade_id=UpgradeId("u-stage-1"), previous=Version(OLD), target=Version(NEW)
    )
    await staging.cleanup_staging(Version(NEW))
    assert tree(staging.layout.prefix) == before


async def test_an_installed_version_with_other_bytes_is_refused_not_overwritten(
    staging: AgentFiles,
) -> None:
    home = staging.layout.version_dir(NEW)
    home.mkdir()
    (home / "agent").write_bytes(b"something else")
    with pytest.raises(IntegrityError):
        await staging.stage(marker(), lambda _p: None)
    assert (home / "agent").read_bytes() == b"something else"


async def test_failed_download_is_cleaned_up_completely(
    staging: AgentFiles, mirror: SignedMirror
) -> None:
    [release] = mirror.releases.repository().releases()
    mirror.target(release).write_bytes(b"not the artifact")  # what the mirror serves instead
    before = tree(staging.layout.prefix)
    with pytest.raises(Untrusted, match=r"^hash mismatch"):
        await staging.stage(marker(), lambda _p: None)
    await staging.cleanup_staging(Version(NEW))
    assert tree(staging.layout.prefix) == before


async def test_run_bounded_reports_exit_code_output_and_timeout() -> None:
    code = "print('a'); print('b'); raise SystemExit(7)"
    ok = await run_bounded([sys.executable, "-c", code], 10)
    assert (ok.exit_code, ok.log_tail, ok.timed_out) == (7, ("a", "b"), False)
    started = time.monotonic()
    hung = await run_bounded(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], 0.5
    )
    assert hung.timed_out and not hung.ok
    assert hung.log_tail == ("up",)
    assert time.monotonic() - started < 10
