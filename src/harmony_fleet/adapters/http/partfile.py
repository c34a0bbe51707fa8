"""The bytes of one download on their way to disk: the part file, its sidecar, the writer.

Bytes go to ``<dest>.part`` beside the target (same filesystem, so the final ``os.replace`` is
atomic) and are hashed while they are written. A sidecar ``<dest>.part.meta`` names the URL and
hash the partial bytes belong to, so only a matching leftover is continued (after re-hashing
it). :class:`PartFile` is that file; every method of it blocks and runs on the download's one
worker thread. :class:`WritePipeline` hashes each batch on the event loop and writes it on the
worker while the loop receives the next one. The rules as a whole: :mod:`.downloader`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
from pathlib import Path

from harmony_fleet.adapters.device.fs import fsync_dir, sha256_from
from harmony_fleet.adapters.http.policy import MIB

__all__ = [
    "PartFile",
    "WritePipeline",
    "file_has_sha256",
    "lock_path",
    "meta_path",
    "part_path",
    "writev_all",
]

IOV_MAX = 512  # well under Linux's 1024 iovecs per writev
WRITEBACK_STEP = 32 * MIB  # start writeback of the part file every this many bytes


def part_path(dest: Path) -> Path:
    """Where the partial bytes of ``dest`` live while it downloads."""
    return dest.with_name(dest.name + ".part")


def meta_path(dest: Path) -> Path:
    """The sidecar naming the URL and hash the partial bytes belong to."""
    return dest.with_name(dest.name + ".part.meta")


def lock_path(dest: Path) -> Path:
    """The file whose ``flock`` serialises downloads of ``dest``."""
    return dest.with_name(dest.name + ".lock")


def writev_all(fd: int, pieces: list[bytes]) -> int:
    total = sum(map(len, pieces))
    if len(pieces) > IOV_MAX:
        pieces = [b"".join(pieces)]
    written = os.writev(fd, pieces)
    if written < total:  # short write: finish byte by byte-range
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]
    return total


def file_has_sha256(path: Path, sha256: str, size: int | None) -> bool:
    """Whether ``path`` exists and holds exactly the expected bytes (blocking)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if size is not None and os.fstat(fd).st_size != size:
            return False
        return sha256_from(fd).hexdigest() == sha256
    finally:
        os.close(fd)


class PartFile:
    """The partial file beside ``dest``: its descriptor, length, running hash and sidecar.

    Every method here blocks; the downloader runs them on its worker thread.
    """

    def __init__(self, dest: Path, url: str, sha256: str) -> None:
        self.dest = dest
        self.path = part_path(dest)
        self.meta_path = meta_path(dest)
        self._meta = {"url": url, "sha256": sha256}
        self.fd = -1
        self.hasher = hashlib.sha256()
        self.length = 0
        self.from_earlier = False
        """True once the bytes were assembled from more than one response (or an earlier run)."""
        self._writeback_from = 0
        self._writeback_mark = 0
        self._writeback_at = WRITEBACK_STEP

    def open(self, max_length: int | None) -> None:
        """Continue a matching leftover (re-hashing it) or start an empty part file."""
        if self._meta_matches() and self.path.is_file():
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            if max_length is not None and os.fstat(self.fd).st_size > max_length:
                self.truncate()
                return
            self.hasher = sha256_from(self.fd)  # leaves the offset at the end
            self.length = os.lseek(self.fd, 0, os.SEEK_CUR)
            self._reset_writeback()
            return
        # Drop the sidecar first: a crash in between leaves a part without one, which is
        # discarded next time, never a sidecar vouching for someone else's bytes.
        self.meta_path.unlink(missing_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        tmp.write_text(json.dumps(self._meta))
        os.replace(tmp, self.meta_path)

    def _meta_matches(self) -> bool:
        try:
            return bool(json.loads(self.meta_path.read_text()) == self._meta)
        except (OSError, ValueError):
            return False

    def write(self, pieces: list[bytes]) -> None:
        """Append one batch, already hashed by the caller (runs on the worker thread)."""
        self.length += writev_all(self.fd, pieces)
        if self.length >= self._writeback_at:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Start writing back the newest window and drop the (by now clean) one before it.

        Without this the whole artifact sits dirty in the page cache until the final fsync,
        which then stalls for seconds and, on a small device, squeezes other services' cache.
        ``POSIX_FADV_DONTNEED`` starts asynchronous writeback of dirty pages and drops clean
        ones; it never loses data.
        """
        with contextlib.suppress(OSError):  # advice only: a filesystem may not support it
            start = self._writeback_from
            os.posix_fadvise(self.fd, start, self.length - start, os.POSIX_FADV_DONTNEED)
        self._writeback_from = self._writeback_mark
        self._writeback_mark = self.length
        self._writeback_at = self.length + WRITEBACK_STEP

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.length = 0
        self.from_earlier = False
        self._reset_writeback()

    def _reset_writeback(self) -> None:
        self._writeback_from = self._writeback_mark = self.length
        self._writeback_at = self.length + WRITEBACK_STEP

    def commit(self) -> None:
        """fsync, rename over ``dest``, fsync the directory, drop the sidecar."""
        os.fsync(self.fd)
        self.close()
        os.replace(self.path, self.dest)
        fsync_dir(self.dest.parent)
        self.meta_path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class WritePipeline:
    """Hash each batch on the loop, write it on the worker while the loop receives the next.

    Measured on loopback (``docs/downloads.md``): hashing on the loop and writing on one
    worker beat doing both on the worker (GIL hand-offs per piece cost more than they saved)
    and matched doing both on the loop, while keeping a slow disk (a throttled SD card can
    block ``write`` for seconds) from freezing the event loop. Hashing costs the loop about
    1 ms per MiB and ``hashlib`` drops the GIL meanwhile, so the worker's write overlaps it.
    """

    def __init__(self, part: PartFile, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        self._part = part
        self._executor = executor
        self._pending: concurrent.futures.Future[None] | None = None

    async def feed(self, pieces: list[bytes]) -> None:
        hasher = self._part.hasher
        for piece in pieces:
            hasher.update(piece)
        await self.drain()
        self._pending = self._executor.submit(self._part.write, pieces)

    async def drain(self) -> None:
        """Wait for the batch in flight; its OSError surfaces here."""
        pending = self._pending
        if pending is not None:
            await asyncio.wrap_future(pending)
            self._pending = None

    def settle(self) -> None:
        """Block until the worker is idle (cleanup path; errors are dropped)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            concurrent.futures.wait([pending])
