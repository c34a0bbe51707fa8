"""Disk space: checked before the body is asked for, and a real full disk mid-write."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from dl_helpers import FAST, Artifact, ScriptedServer, serve, tmpfs

from harmony_fleet.adapters.http import download
from harmony_fleet.adapters.http.downloader import meta_path, part_path
from harmony_fleet.errors import InsufficientSpace


@dataclasses.dataclass
class FixedFreeSpace:
    """Claims a fixed number of free bytes and records where it was asked about."""

    free: int
    asked: list[Path] = dataclasses.field(default_factory=list)

    def free_bytes(self, path: Path) -> int:
        self.asked.append(path)
        return self.free


async def test_injected_free_space_refuses_before_any_request(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    space = FixedFreeSpace(artifact.size - 1)
    with pytest.raises(InsufficientSpace) as info:
        await download(
            scripted.url, dest, artifact.sha256, artifact.size, policy=FAST, free_space=space
        )
    assert (info.value.needed, info.value.free) == (artifact.size, artifact.size - 1)
    assert space.asked == [dest.parent]
    assert scripted.requests == []


async def test_free_space_counts_bytes_already_present(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    """Resuming needs room only for the rest."""
    have = 2_000_000
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(artifact.data[:have])
    meta_path(dest).write_text(f'{{"url": "{scripted.url}", "sha256": "{artifact.sha256}"}}')
    scripted.script = [serve(artifact.data)]
    space = FixedFreeSpace(artifact.size - have)
    await download(
        scripted.url, dest, artifact.sha256, artifact.size, policy=FAST, free_space=space
    )
    assert dest.read_bytes() == artifact.data


async def test_keep_free_bytes_is_added_to_the_need(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    policy = dataclasses.replace(FAST, keep_free_bytes=1000)
    space = FixedFreeSpace(artifact.size + 999)
    with pytest.raises(InsufficientSpace) as info:
        await download(
            scripted.url, dest, artifact.sha256, artifact.size, policy=policy, free_space=space
        )
    assert info.value.needed == artifact.size + 1000


async def test_content_length_is_used_when_no_size_is_declared(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    scripted.script = [serve(artifact.data)]
    space = FixedFreeSpace(1000)
    with pytest.raises(InsufficientSpace) as info:
        await download(scripted.url, dest, artifact.sha256, policy=FAST, free_space=space)
    assert info.value.needed == artifact.size
    assert len(scripted.requests) == 1
    assert part_path(dest).stat().st_size == 0  # nothing of the body was written


async def test_real_full_disk_before_start(
    scripted: ScriptedServer, artifact: Artifact, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", "1m") as mnt:
        dest = mnt / "artifact.bin"
        with pytest.raises(InsufficientSpace):
            await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
        assert scripted.requests == []


async def test_real_full_disk_mid_write(
    scripted: ScriptedServer, artifact: Artifact, tmp_path: Path
) -> None:
    """No size, no Content-Length: only ENOSPC can tell, and it must end cleanly."""
    scripted.script = [serve(artifact.data, content_length=False)]
    with tmpfs(tmp_path / "small", "1m") as mnt:
        dest = mnt / "artifact.bin"
        with pytest.raises(InsufficientSpace) as info:
            await download(scripted.url, dest, artifact.sha256, policy=FAST)
        assert not part_path(dest).exists()  # the space is given back
        assert not dest.exists()
        assert len(scripted.requests) == 1  # a full disk is not retried
    # The size was never announced: the detail says so rather than "need -1 bytes".
    assert info.value.needed is None
    assert "the size needed is unknown" in str(info.value), str(info.value)
    assert "need -1" not in str(info.value)
