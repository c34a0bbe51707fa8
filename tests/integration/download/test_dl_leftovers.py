"""Leftovers of earlier runs (partial files, sidecars) never break a later download."""

from __future__ import annotations

import json
from pathlib import Path

from dl_helpers import FAST, Artifact, ScriptedServer, make_artifact, serve, status

from harmony_fleet.adapters.http import download
from harmony_fleet.adapters.http.downloader import meta_path, part_path


def leave_part(dest: Path, data: bytes, *, url: str | None, sha256: str | None) -> None:
    """What an earlier run killed mid-download leaves behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part_path(dest).write_bytes(data)
    if url is not None:
        meta_path(dest).write_text(json.dumps({"url": url, "sha256": sha256}))


async def test_zero_byte_leftover_with_sidecar(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    leave_part(dest, b"", url=scripted.url, sha256=artifact.sha256)
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert "range" not in scripted.requests[0].headers
    assert len(scripted.requests) == 1


async def test_zero_byte_leftover_without_sidecar(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    leave_part(dest, b"", url=None, sha256=None)
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert not part_path(dest).exists() and not meta_path(dest).exists()


async def test_leftover_for_another_hash_is_discarded(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    other = make_artifact(artifact.size, seed=2)
    leave_part(dest, other.data[:2_000_000], url=scripted.url, sha256=other.sha256)
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert "range" not in scripted.requests[0].headers
    assert scripted.requests[0].sent == artifact.size


async def test_leftover_for_another_url_is_discarded(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    leave_part(dest, artifact.data[:10], url="http://mirror/x", sha256=artifact.sha256)
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, policy=FAST)
    assert "range" not in scripted.requests[0].headers


async def test_garbled_sidecar_is_discarded(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    leave_part(dest, artifact.data[:10], url=None, sha256=None)
    meta_path(dest).write_bytes(b"\x00{not json")
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert "range" not in scripted.requests[0].headers


async def test_matching_leftover_is_resumed_across_runs(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    have = 1_048_577
    leave_part(dest, artifact.data[:have], url=scripted.url, sha256=artifact.sha256)
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert scripted.requests[0].headers["range"] == f"bytes={have}-"
    assert scripted.requests[0].sent == artifact.size - have


async def test_leftover_longer_than_declared_size_is_discarded(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    leave_part(dest, artifact.data + b"junk", url=scripted.url, sha256=artifact.sha256)
    scripted.script = [serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert "range" not in scripted.requests[0].headers


async def test_complete_leftover_is_verified_without_a_request(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    """Killed between the last byte and the rename: with a size, nothing to fetch."""
    leave_part(dest, artifact.data, url=scripted.url, sha256=artifact.sha256)
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert scripted.requests == []


async def test_complete_leftover_without_size_is_taken_on_416(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    leave_part(dest, artifact.data, url=scripted.url, sha256=artifact.sha256)
    scripted.script = [
        status("416 Range Not Satisfiable", {"Content-Range": f"bytes */{artifact.size}"})
    ]
    await download(scripted.url, dest, artifact.sha256, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert len(scripted.requests) == 1
