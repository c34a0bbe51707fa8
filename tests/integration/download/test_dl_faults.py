"""download() against a scripted raw server: drops, stalls, truncation, endless and odd bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from pathlib import Path

import pytest
from dl_helpers import (
    FAST,
    Artifact,
    Reply,
    ScriptedServer,
    drop_after,
    endless,
    serve,
    stall_after,
    status,
)

from harmony_fleet.adapters.http import DownloadProgress, download
from harmony_fleet.adapters.http.downloader import meta_path, part_path
from harmony_fleet.errors import DownloadInterrupted, IntegrityError, TemporaryError, TooLarge

NO_RETRY = dataclasses.replace(FAST, max_retries=0)


async def test_truncated_body_is_detected_and_kept_for_resume(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    cut = 1_234_567
    scripted.script = [drop_after(artifact.data, cut)]
    with pytest.raises(DownloadInterrupted):
        await download(scripted.url, dest, artifact.sha256, policy=NO_RETRY)
    assert not dest.exists()
    assert part_path(dest).read_bytes() == artifact.data[:cut]
    assert meta_path(dest).exists()


async def test_close_delimited_body_shorter_than_declared_size(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    """No Content-Length, clean close: no transport error at all; only our own count sees it."""
    scripted.script = [drop_after(artifact.data, 1000, content_length=False)]
    with pytest.raises(DownloadInterrupted, match="ended at byte 1000"):
        await download(scripted.url, dest, artifact.sha256, artifact.size, policy=NO_RETRY)
    assert scripted.requests[0].sent == 1000


async def test_dropped_connection_resumes_with_only_the_rest(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    cut = 2_000_001
    scripted.script = [drop_after(artifact.data, cut), serve(artifact.data)]
    seen: list[DownloadProgress] = []

    await download(
        scripted.url,
        dest,
        artifact.sha256,
        artifact.size,
        on_progress=seen.append,
        policy=FAST,
    )

    assert dest.read_bytes() == artifact.data
    first, second = scripted.requests
    assert "range" not in first.headers
    assert first.sent == cut
    assert second.headers["range"] == f"bytes={cut}-"
    assert second.sent == artifact.size - cut
    assert seen[-1].retries == 1
    assert seen[-1].bytes_done == artifact.size


async def test_server_ignoring_range_restarts_from_zero(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    cut = 1_500_000
    scripted.script = [drop_after(artifact.data, cut), serve(artifact.data, honour_range=False)]
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data  # not the first cut bytes twice
    assert scripted.requests[1].headers["range"] == f"bytes={cut}-"
    assert scripted.requests[1].sent == artifact.size
    assert len(scripted.requests) == 2


async def test_416_restarts_from_zero(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    cut = 999_999
    scripted.script = [
        drop_after(artifact.data, cut),
        status("416 Range Not Satisfiable", {"Content-Range": f"bytes */{artifact.size}"}),
        serve(artifact.data),
    ]
    await download(scripted.url, dest, artifact.sha256, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert [r.headers.get("range") for r in scripted.requests] == [None, f"bytes={cut}-", None]
    assert scripted.requests[2].sent == artifact.size


async def test_content_changed_between_attempts_restarts_once_then_succeeds(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    old = bytes(b ^ 0x5A for b in artifact.data)  # the previous release, same length
    cut = 1_000_000
    scripted.script = [drop_after(old, cut), serve(artifact.data), serve(artifact.data)]
    await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert [r.headers.get("range") for r in scripted.requests] == [None, f"bytes={cut}-", None]


async def test_content_wrong_after_restart_fails(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    wrong = bytes(b ^ 0x5A for b in artifact.data)
    scripted.script = [drop_after(wrong, 1000), serve(wrong), serve(wrong), serve(wrong)]
    with pytest.raises(IntegrityError):
        await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert len(scripted.requests) == 3  # first, resumed, once more from zero: then stop
    assert not part_path(dest).exists()


async def test_stalled_server_fails_fast(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    released = asyncio.Event()
    scripted.script = [stall_after(artifact.data, 100_000, released)] * 2
    policy = dataclasses.replace(FAST, stall_timeout_s=0.3, max_retries=1)
    started = time.monotonic()
    try:
        with pytest.raises(DownloadInterrupted, match="stalled: no bytes"):
            await download(scripted.url, dest, artifact.sha256, policy=policy)
    finally:
        released.set()
    assert time.monotonic() - started < 3.0  # two 0.3 s stalls, not the 30 s deadline
    assert len(scripted.requests) == 2
    assert scripted.requests[1].headers["range"] == "bytes=100000-"


async def test_stall_then_recovery(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    released = asyncio.Event()
    scripted.script = [stall_after(artifact.data, 100_000, released), serve(artifact.data)]
    policy = dataclasses.replace(FAST, stall_timeout_s=0.3)
    try:
        await download(scripted.url, dest, artifact.sha256, policy=policy)
    finally:
        released.set()
    assert dest.read_bytes() == artifact.data
    assert scripted.requests[1].sent == artifact.size - 100_000


async def test_endless_body_is_refused_past_the_declared_size(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    scripted.script = [endless()]
    with pytest.raises(TooLarge):
        await download(scripted.url, dest, artifact.sha256, artifact.size, policy=FAST)
    assert not part_path(dest).exists()
    assert not dest.exists()
    await scripted.wait_for(lambda: not scripted._tasks)  # the server saw the client leave
    # it stopped reading right after the limit: at most a few socket buffers more
    assert scripted.requests[0].sent < artifact.size + 16 * 1024 * 1024
    assert len(scripted.requests) == 1


async def test_endless_body_without_size_is_refused_by_max_bytes(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    scripted.script = [endless()]
    policy = dataclasses.replace(FAST, max_bytes=2_000_000)
    with pytest.raises(TooLarge):
        await download(scripted.url, dest, artifact.sha256, policy=policy)
    assert not part_path(dest).exists()


async def test_overall_deadline(scripted: ScriptedServer, artifact: Artifact, dest: Path) -> None:
    released = asyncio.Event()
    scripted.script = [stall_after(artifact.data, 10, released)]
    policy = dataclasses.replace(FAST, deadline_s=0.5, stall_timeout_s=60)
    started = time.monotonic()
    try:
        with pytest.raises(TemporaryError, match="deadline"):
            await download(scripted.url, dest, artifact.sha256, policy=policy)
    finally:
        released.set()
    assert time.monotonic() - started < 5


async def test_progress_is_throttled(scripted: ScriptedServer, dest: Path) -> None:
    """A paced body gives one report per interval at most, plus the final one."""
    piece = b"z" * 65536
    pieces = 40
    data = piece * pieces

    async def trickle(reply: Reply) -> None:
        await reply.head("200 OK", {"Content-Length": str(len(data))})
        for _ in range(pieces):
            await reply.body(piece)
            await asyncio.sleep(0.02)  # the link's pace, not a wait for a condition

    scripted.script = [trickle]
    stamps: list[tuple[float, DownloadProgress]] = []
    started = time.monotonic()
    await download(
        scripted.url,
        dest,
        hashlib.sha256(data).hexdigest(),
        on_progress=lambda p: stamps.append((time.monotonic(), p)),
        policy=dataclasses.replace(FAST, progress_interval_s=0.25),
    )
    elapsed = time.monotonic() - started
    assert stamps[-1][1].bytes_done == stamps[-1][1].bytes_total == len(data)
    periodic = [t for t, _ in stamps[:-1]]
    assert len(periodic) >= 1  # the body took >= 0.8 s
    gaps = [b - a for a, b in zip([started, *periodic], periodic, strict=False)]
    assert all(gap >= 0.24 for gap in gaps), gaps
    assert len(periodic) <= elapsed / 0.24
    assert all(p.rate_bps > 0 for _, p in stamps)


async def test_partial_answer_to_a_plain_get_is_retried_with_backoff(
    scripted: ScriptedServer, artifact: Artifact, dest: Path
) -> None:
    """A 206 from byte 5 when nothing was asked: no restart loop, a bounded retry."""
    bogus = status("206 Partial Content", {"Content-Range": f"bytes 5-9/{artifact.size}"})
    scripted.script = [bogus, bogus, bogus]
    policy = dataclasses.replace(FAST, max_retries=2)
    with pytest.raises(DownloadInterrupted, match="unusable 206"):
        await download(scripted.url, dest, artifact.sha256, policy=policy)
    assert len(scripted.requests) == 3
