"""Servers and helpers for the download tests.

pytest-httpserver covers well-formed answers. The nasty cases (a connection dropped mid-body,
a stall, an endless body, a close-delimited body) need control over raw bytes on the socket,
so :class:`ScriptedServer` is a tiny asyncio HTTP/1.1 server in the test's own event loop:
each request is answered by the next handler of a script, and it records what it received
(headers) and how many body bytes each answer actually sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harmony_fleet.adapters.http import DownloadPolicy


@dataclass
class Seen:
    """One request as the server saw it, and the body bytes it then sent."""

    method: str
    path: str
    headers: dict[str, str]
    sent: int = 0


@dataclass
class Reply:
    """What a handler uses to answer: raw writes that count body bytes."""

    writer: asyncio.StreamWriter
    seen: Seen

    async def head(self, status: str, headers: dict[str, str]) -> None:
        lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def body(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.seen.sent += len(data)


Handler = Callable[[Reply], Awaitable[None]]


@dataclass
class ScriptedServer:
    script: list[Handler] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    connections: int = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/artifact.bin"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()  # handlers then end on their own connection error
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5)
            for task in stuck:  # a handler parked on an event nobody set
                task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (with a deadline, no polling sleep) until ``predicate()`` holds."""
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            while True:  # keep-alive: several requests may come on one connection
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                seen = Seen(method, path, headers)
                self.requests.append(seen)
                handler = self.script.pop(0) if self.script else _not_scripted
                await self._notify()
                await handler(Reply(writer, seen))
                await self._notify()
        except (asyncio.IncompleteReadError, ConnectionError, _Close):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await self._notify()


class _Close(Exception):
    """Raised by a handler to close the connection after its answer."""


async def _not_scripted(reply: Reply) -> None:
    await reply.head("500 Not Scripted", {"Content-Length": "0"})


_RANGE = re.compile(r"bytes=(\d+)-$")


def serve(data: bytes, *, honour_range: bool = True, content_length: bool = True) -> Handler:
    """Answer with ``data`` (206 for a ``Range: bytes=N-`` when ``honour_range``)."""

    async def handler(reply: Reply) -> None:
        start = 0
        match = _RANGE.match(reply.seen.headers.get("range", ""))
        if match and honour_range:
            start = int(match.group(1))
            headers = {
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                "Content-Length": str(len(data) - start),
            }
            await reply.head("206 Partial Content", headers)
        elif content_length:
            await reply.head("200 OK", {"Content-Length": str(len(data))})
        else:
            await reply.head("200 OK", {"Connection": "close"})
        await reply.body(data[start:])
        if not content_length:
            raise _Close

    return handler


def drop_after(data: bytes, n: int, *, content_length: bool = True) -> Handler:
    """Announce all of ``data`` (unless not ``content_length``), send ``n`` bytes, close."""

    async def handler(reply: Reply) -> None:
        headers = {"Content-Length": str(len(data))} if content_length else {}
        await reply.head("200 OK", {**headers, "Connection": "close"})
        await reply.body(data[:n])
        raise _Close

    return handler


def stall_after(data: bytes, n: int, released: asyncio.Event) -> Handler:
    """Announce ``data``, send ``n`` bytes, then say nothing until ``released`` is set."""

    async def handler(reply: Reply) -> None:
        await reply.head("200 OK", {"Content-Length": str(len(data))})
        await reply.body(data[:n])
        await released.wait()
        raise _Close

    return handler


def endless(piece: bytes = b"x" * 65536) -> Handler:
    """A close-delimited body that never ends (until the client goes away)."""

    async def handler(reply: Reply) -> None:
        await reply.head("200 OK", {"Connection": "close"})
        while True:
            await reply.body(piece)

    return handler


def status(code: str, headers: dict[str, str] | None = None) -> Handler:
    async def handler(reply: Reply) -> None:
        await reply.head(code, {"Content-Length": "0", **(headers or {})})

    return handler


@dataclass(frozen=True)
class Artifact:
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def make_artifact(n: int, seed: int = 1) -> Artifact:
    data = hashlib.shake_256(seed.to_bytes(4, "big")).digest(n)
    return Artifact(data, hashlib.sha256(data).hexdigest())


FAST = DownloadPolicy(
    deadline_s=30.0,
    stall_timeout_s=5.0,
    connect_timeout_s=5.0,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    max_retries=5,
    lock_poll_max_s=0.02,
)
"""Test policy: real code paths, small waits."""


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """Mount a real tmpfs of ``size`` at ``path``, or skip the test saying why."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    rc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    ).returncode
    if rc != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount exit status {rc})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
