"""Two downloads of one target: the second waits on the lock, then finds the file in place."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dl_helpers import FAST, Artifact, Reply, ScriptedServer, serve

from harmony_fleet.adapters.http import download


class _Waiting(logging.Handler):
    """Sets an event when the lock module reports that someone waits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("waiting for the lock"):
            self.event.set()


@pytest.fixture
def lock_waits() -> object:
    handler = _Waiting()
    logger = logging.getLogger("harmony_fleet.adapters.http.lock")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


async def test_two_concurrent_downloads_of_one_target(
    scripted: ScriptedServer, artifact: Artifact, dest: Path, lock_waits: _Waiting
) -> None:
    gate = asyncio.Event()

    async def gated(reply: Reply) -> None:
        """Send half, then hold until the second download is seen waiting for the lock."""
        half = artifact.size // 2
        await reply.head("200 OK", {"Content-Length": str(artifact.size)})
        await reply.body(artifact.data[:half])
        await gate.wait()
        await reply.body(artifact.data[half:])

    scripted.script = [gated, serve(artifact.data)]
    first = asyncio.create_task(download(scripted.url, dest, artifact.sha256, policy=FAST))
    await scripted.wait_for(lambda: len(scripted.requests) == 1)
    second = asyncio.create_task(download(scripted.url, dest, artifact.sha256, policy=FAST))
    async with asyncio.timeout(10):
        await lock_waits.event.wait()
    assert not first.done() and not second.done()
    gate.set()

    assert await first == dest
    assert await second == dest
    assert dest.read_bytes() == artifact.data
    assert len(scripted.requests) == 1  # the second never asked


async def test_downloads_in_two_processes_do_not_collide(
    scripted: ScriptedServer, artifact: Artifact, dest: Path, tmp_path: Path
) -> None:
    """flock holds across processes: a child downloading the same target waits for us."""
    gate = asyncio.Event()

    async def gated(reply: Reply) -> None:
        await reply.head("200 OK", {"Content-Length": str(artifact.size)})
        await reply.body(artifact.data[:1000])
        await gate.wait()
        await reply.body(artifact.data[1000:])

    scripted.script = [gated, serve(artifact.data)]
    ours = asyncio.create_task(download(scripted.url, dest, artifact.sha256, policy=FAST))
    await scripted.wait_for(lambda: len(scripted.requests) == 1)
    child_code = textwrap.dedent(
        f"""
        import asyncio, logging, sys
        from harmony_fleet.adapters.http import download
        class H(logging.Handler):
            def emit(self, record):
                print("WAITING", flush=True)
        lg = logging.getLogger("harmony_fleet.adapters.http.lock")
        lg.setLevel(logging.DEBUG); lg.addHandler(H())
        asyncio.run(download({scripted.url!r}, {str(dest)!r}, {artifact.sha256!r}))
        print("DONE", flush=True)
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", child_code, stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    async with asyncio.timeout(20):
        assert (await child.stdout.readline()).strip() == b"WAITING"
    gate.set()
    assert await ours == dest
    async with asyncio.timeout(20):
        assert (await child.stdout.readline()).strip() == b"DONE"
        assert await child.wait() == 0
    assert dest.read_bytes() == artifact.data
    assert len(scripted.requests) == 1
