"""Fetch one artifact over HTTP(S) into place, verified, resumable, and safe to interrupt.

An agent upgrade starts with this download, on links that drop and stall and disks that fill.
The failures users report of comparable tools are a 0-byte or stale leftover breaking every
later retry, a full disk discovered half-way, clients hanging forever when the network goes
quiet, and a truncated body accepted because the HTTP library returned ``b""`` on an early
close. Each rule below answers one of those:

* Bytes go to ``<dest>.part`` beside the target (same filesystem, so the final ``os.replace``
  is atomic) and are hashed while they are written, in one pass. Only a file whose SHA-256 (and
  size, if declared) matches is fsynced and renamed over ``dest``; the directory is fsynced
  after. A reader of ``dest`` sees the old file or the whole new one, never a mix.
* A sidecar ``<dest>.part.meta`` records the URL and hash the partial bytes belong to. A later
  call resumes with ``Range: bytes=N-`` only for the same URL and hash (after re-hashing the N
  bytes on disk); anything else is discarded, so a leftover of any size or origin cannot poison
  a retry. If a resumed file does not verify, the content changed under us: it is fetched once
  more from zero before giving up.
* Received bytes are compared with ``Content-Length``, ``Content-Range`` and the declared size
  by this code, not trusted to the transport; more bytes than declared is refused at once, so an
  endless body cannot fill the disk.
* Stalls are caught by an asyncio timeout around each read of the body, so a silent server
  costs ``stall_timeout_s``, not the whole deadline.
* Retries (connection errors, timeouts, 5xx, 408, 429) wait with exponential backoff and full
  jitter, honour ``Retry-After`` up to a cap, and all live inside one overall deadline. Other
  4xx answers are final at once.
* Free space is checked before a body is asked for; ENOSPC half-way still ends as
  :class:`InsufficientSpace` and frees the partial file.
* An ``flock`` on ``<dest>.lock`` serialises concurrent downloads of one target; the second
  waits, then finds ``dest`` in place and returns without a request.

Throughput: the socket is read in pieces of up to 1 MiB (:mod:`.transport`); pieces are
gathered into ~1 MiB batches, hashed on the loop (``hashlib`` drops the GIL) and written with
``os.writev`` on one worker thread while the loop receives the next batch, and writeback of
the part file is started every 32 MiB so the final fsync is short. Memory stays at two batches
in flight whatever the artifact size. ``docs/downloads.md`` has the measured figures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from harmony_fleet.adapters.device.fs import fsync_dir, sha256_from
from harmony_fleet.adapters.http.lock import exclusive_lock
from harmony_fleet.adapters.http.policy import (
    MIB,
    DownloadPolicy,
    backoff_delay,
    check_url,
    parse_retry_after,
)
from harmony_fleet.adapters.http.progress import ProgressCallback, ProgressThrottle
from harmony_fleet.adapters.http.space import FreeSpace, StatvfsFreeSpace
from harmony_fleet.adapters.http.transport import make_transport
from harmony_fleet.adapters.http.wrap import RETRY_STATUSES, wrap_httpx_error, wrap_os_error
from harmony_fleet.errors import (
    DownloadInterrupted,
    DownloadRejected,
    HTTPStatusError,
    InsufficientSpace,
    IntegrityError,
    TemporaryError,
    Timeout,
    TooLarge,
)

__all__ = ["DEFAULT_POLICY", "download", "lock_path", "meta_path", "part_path"]

log = logging.getLogger(__name__)

DEFAULT_POLICY = DownloadPolicy()

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_IOV_MAX = 512  # well under Linux's 1024 iovecs per writev
_WRITEBACK_STEP = 32 * MIB  # start writeback of the part file every this many bytes

T = TypeVar("T")


def part_path(dest: Path) -> Path:
    """Where the partial bytes of ``dest`` live while it downloads."""
    return dest.with_name(dest.name + ".part")


def meta_path(dest: Path) -> Path:
    """The sidecar naming the URL and hash the partial bytes belong to."""
    return dest.with_name(dest.name + ".part.meta")


def lock_path(dest: Path) -> Path:
    """The file whose ``flock`` serialises downloads of ``dest``."""
    return dest.with_name(dest.name + ".lock")


class _RestartFromZero(Exception):
    """Internal: the partial bytes are unusable; start again from byte 0 without waiting."""


def _writev_all(fd: int, pieces: list[bytes]) -> int:
    total = sum(map(len, pieces))
    if len(pieces) > _IOV_MAX:
        pieces = [b"".join(pieces)]
    written = os.writev(fd, pieces)
    if written < total:  # short write: finish byte by byte-range
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]
    return total


def _file_has_sha256(path: Path, sha256: str, size: int | None) -> bool:
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


class _Part:
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
        self._writeback_at = _WRITEBACK_STEP

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
        self.length += _writev_all(self.fd, pieces)
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
        self._writeback_at = self.length + _WRITEBACK_STEP

    def truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        self.hasher = hashlib.sha256()
        self.length = 0
        self.from_earlier = False
        self._reset_writeback()

    def _reset_writeback(self) -> None:
        self._writeback_from = self._writeback_mark = self.length
        self._writeback_at = self.length + _WRITEBACK_STEP

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


class _Pipeline:
    """Hash each batch on the loop, write it on the worker while the loop receives the next.

    Measured on loopback (``docs/downloads.md``): hashing on the loop and writing on one
    worker beat doing both on the worker (GIL hand-offs per piece cost more than they saved)
    and matched doing both on the loop, while keeping a slow disk (a throttled SD card can
    block ``write`` for seconds) from freezing the event loop. Hashing costs the loop about
    1 ms per MiB and ``hashlib`` drops the GIL meanwhile, so the worker's write overlaps it.
    """

    def __init__(self, part: _Part, executor: concurrent.futures.ThreadPoolExecutor) -> None:
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


class _Download:
    """State of one :func:`download` call: the part file, counters, and the attempt loop."""

    def __init__(
        self,
        url: str,
        dest: Path,
        sha256: str,
        size: int | None,
        *,
        on_progress: ProgressCallback | None,
        policy: DownloadPolicy,
        headers: Mapping[str, str] | None,
        free_space: FreeSpace,
        executor: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self.url = url
        self.dest = dest
        self.sha256 = sha256
        self.size = size
        self.policy = policy
        self.headers = dict(headers or {})
        self.free_space = free_space
        self.executor = executor
        self.part = _Part(dest, url, sha256)
        self.pipeline = _Pipeline(self.part, executor)
        self.progress = ProgressThrottle(on_progress, policy.progress_interval_s)
        self.progress.bytes_total = size
        self.received = 0
        self.last_error: BaseException | None = None
        # httpx's read timeout guards the wait for headers; during the body the asyncio timeout
        # around each read (in _receive) fires first and names the stall. The extra second
        # keeps the two from racing.
        self.timeout = httpx.Timeout(
            connect=policy.connect_timeout_s,
            read=policy.stall_timeout_s + 1.0,
            write=policy.stall_timeout_s + 1.0,
            pool=policy.connect_timeout_s,
        )

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _part_io(self, fn: Callable[[], None]) -> None:
        try:
            await self._io(fn)
        except OSError as exc:
            raise wrap_os_error(exc, self.part.path) from exc

    async def _dest_ready(self) -> bool:
        try:
            return await self._io(_file_has_sha256, self.dest, self.sha256, self.size)
        except OSError as exc:
            raise wrap_os_error(exc, self.dest) from exc

    async def run(self, client: httpx.AsyncClient | None, deadline_at: float) -> Path:
        if await self._dest_ready():
            log.debug("already present", extra={"dest": str(self.dest)})
            return self.dest
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise wrap_os_error(exc, self.dest.parent) from exc
        async with exclusive_lock(lock_path(self.dest), poll_max_s=self.policy.lock_poll_max_s):
            if await self._dest_ready():  # the holder we waited for fetched it
                return self.dest
            try:
                await self._io(self.part.open, self.size)
            except OSError as exc:
                raise wrap_os_error(exc, self.part.path) from exc
            try:
                if client is not None:
                    await self._attempts(client, deadline_at)
                else:
                    async with httpx.AsyncClient(
                        transport=make_transport(),
                        follow_redirects=True,
                        max_redirects=self.policy.max_redirects,
                        timeout=self.timeout,
                    ) as own:
                        await self._attempts(own, deadline_at)
            finally:
                # Queued behind anything still running on the single worker, so the descriptor
                # is never closed under a read or write in flight (even on cancellation).
                self.pipeline.settle()
                self.executor.submit(self.part.close)
        return self.dest

    async def _attempts(self, client: httpx.AsyncClient, deadline_at: float) -> None:
        loop = asyncio.get_running_loop()
        failures = 0  # consecutive failed attempts that received nothing
        restarted_for_content = False
        while True:
            received_before = self.received
            try:
                await self._attempt(client)
                await self._finish()
                return
            except _RestartFromZero as exc:
                log.info("restarting from zero: %s", exc, extra={"url": self.url})
                await self._part_io(self.part.truncate)
                self.progress.retries += 1
            except IntegrityError as exc:
                if self.part.from_earlier and not restarted_for_content:
                    # Resumed bytes plus new ones do not verify: the file changed on the server
                    # between the two. One clean download decides.
                    restarted_for_content = True
                    log.warning(
                        "resumed download does not verify, starting over: %s",
                        exc,
                        extra={"url": self.url},
                    )
                    await self._part_io(self.part.truncate)
                    self.progress.retries += 1
                    continue
                await self._part_io(self.part.discard)
                raise
            except TooLarge:
                await self._part_io(self.part.discard)
                raise
            except TemporaryError as exc:
                self.last_error = exc
                failures = 1 if self.received > received_before else failures + 1
                retries = self.progress.retries
                if self.policy.max_retries is not None and retries >= self.policy.max_retries:
                    raise
                delay = backoff_delay(
                    failures,
                    initial_s=self.policy.backoff_initial_s,
                    max_s=self.policy.backoff_max_s,
                )
                if exc.retry_after is not None:
                    delay = min(exc.retry_after, self.policy.retry_after_max_s)
                if loop.time() + delay >= deadline_at:
                    raise Timeout(
                        f"download of {self.url} gave up after {retries} retries: the next "
                        f"one (in {delay:.1f} s) would pass the deadline; last error: {exc}",
                        retry_after=delay,
                    ) from exc
                self.progress.retries += 1
                log.warning(
                    "download attempt failed, retrying in %.2f s: %s",
                    delay,
                    exc,
                    extra={"url": self.url, "retry": retries + 1, "bytes": self.part.length},
                )
                await asyncio.sleep(delay)

    async def _attempt(self, client: httpx.AsyncClient) -> None:
        """One request; returns once the part holds the whole body, raises otherwise."""
        part = self.part
        offset = part.length
        if self.size is not None:
            if offset == self.size:  # a leftover that is already whole: verify, no request
                part.from_earlier = offset > 0
                return
            self._check_space(self.size - offset)
        headers = {**self.headers, "Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
        try:
            async with client.stream(
                "GET", self.url, headers=headers, follow_redirects=True, timeout=self.timeout
            ) as response:
                await self._take(response, offset)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
            raise wrap_httpx_error(exc, self.url) from exc
        except OSError as exc:  # from the part file: a full disk, a broken one
            free = self._free_or_unknown()
            needed = self.size - offset if self.size is not None else None
            wrapped = wrap_os_error(exc, part.path, needed=needed, free=free)
            if isinstance(wrapped, InsufficientSpace):
                await self._part_io(part.discard)
            raise wrapped from exc

    async def _take(self, response: httpx.Response, offset: int) -> None:
        """Check the status and headers of ``response``, then receive its body into the part."""
        status = response.status_code
        length = _content_length(response)
        total = None if length is None else offset + length
        if status == 206:
            try:
                start, range_total = _content_range(response)
                if start != offset:
                    raise _RestartFromZero(f"asked for bytes from {offset}, got from {start}")
            except _RestartFromZero as exc:
                if offset == 0:  # nothing to restart: a broken answer, retried with backoff
                    raise DownloadInterrupted(f"unusable 206 from {self.url}: {exc}") from None
                raise
            self.part.from_earlier = offset > 0
            total = range_total if range_total is not None else total
        elif status == 200:
            total = length
            if offset > 0:
                log.info("server ignored Range; restarting from zero", extra={"url": self.url})
                await self._part_io(self.part.truncate)
                offset = 0
        elif status == 416 and offset > 0:
            if self.part.hasher.copy().hexdigest() == self.sha256:
                self.part.from_earlier = True  # the leftover was whole already
                return
            raise _RestartFromZero(f"HTTP 416 for bytes from {offset}")
        elif status in RETRY_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            raise DownloadInterrupted(f"HTTP {status} from {self.url}", retry_after=retry_after)
        else:
            raise HTTPStatusError(self.url, status)

        limit = self.size if self.size is not None else self.policy.max_bytes
        if total is not None and limit is not None and total > limit:
            raise TooLarge(f"{self.url} announces {total} bytes, more than the {limit} allowed")
        if self.size is not None and total is not None and total < self.size:
            raise IntegrityError("size", str(self.size), str(total))
        if self.size is None:
            self.progress.bytes_total = total
            if total is not None:
                self._check_space(total - offset)

        received = await self._receive(response, offset, limit)
        if length is not None and received < length:
            raise DownloadInterrupted(
                f"body from {self.url} ended early: {received} of {length} bytes"
            )
        if self.size is not None and offset + received < self.size:
            raise DownloadInterrupted(
                f"body from {self.url} ended at byte {offset + received} of {self.size}"
            )

    async def _receive(self, response: httpx.Response, offset: int, limit: int | None) -> int:
        """Stream the body into the part: stall-checked reads, batched hash+write."""
        stall = self.policy.stall_timeout_s
        batch = self.policy.chunk_size
        progress = self.progress
        pipeline = self.pipeline
        pieces: list[bytes] = []
        buffered = 0
        received = 0
        chunks = response.aiter_raw().__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(stall):
                        piece = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise DownloadInterrupted(
                        f"stalled: no bytes from {self.url} for {stall:g} s"
                    ) from exc
                n = len(piece)
                received += n
                if limit is not None and offset + received > limit:
                    raise TooLarge(f"{self.url} sent more than the {limit} bytes allowed")
                self.received += n
                progress.add(n)
                pieces.append(piece)
                buffered += n
                if buffered >= batch:
                    await pipeline.feed(pieces)
                    pieces = []
                    buffered = 0
                progress.tick(offset + received)
            if pieces:
                await pipeline.feed(pieces)
            await pipeline.drain()
        except (httpx.HTTPError, DownloadInterrupted):
            # The transfer broke: keep every byte that did arrive, for the resume.
            if pieces:
                await pipeline.feed(pieces)
            await pipeline.drain()
            raise
        except BaseException:
            pipeline.settle()
            raise
        return received

    async def _finish(self) -> None:
        part = self.part
        try:
            await self.pipeline.drain()  # normally done already by _receive
        except OSError as exc:
            raise wrap_os_error(exc, part.path) from exc
        if self.size is not None and part.length != self.size:
            raise IntegrityError("size", str(self.size), str(part.length))
        actual = part.hasher.hexdigest()
        if actual != self.sha256:
            raise IntegrityError("sha256", self.sha256, actual)
        try:
            await self._io(part.commit)
        except OSError as exc:
            raise wrap_os_error(exc, self.dest) from exc
        self.progress.bytes_total = part.length
        self.progress.finish(part.length)

    def _free_or_unknown(self) -> int | None:
        try:
            return self.free_space.free_bytes(self.dest.parent)
        except OSError:
            return None

    def _check_space(self, needed: int) -> None:
        if needed <= 0:
            return
        try:
            free = self.free_space.free_bytes(self.dest.parent)
        except OSError as exc:
            raise wrap_os_error(exc, self.dest.parent) from exc
        wanted = needed + self.policy.keep_free_bytes
        if wanted > free:
            raise InsufficientSpace(str(self.dest.parent), wanted, free)


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _content_range(response: httpx.Response) -> tuple[int, int | None]:
    """(first byte, complete length or None) of a 206, or a restart when it makes no sense."""
    match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None:
        raise _RestartFromZero("206 without a usable Content-Range")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


async def download(
    url: str,
    dest: Path | str,
    sha256: str,
    size: int | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    policy: DownloadPolicy = DEFAULT_POLICY,
    headers: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    free_space: FreeSpace | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest`` once its SHA-256 (and size) verify.

    ``sha256`` is the expected hex digest; ``size``, when known, is enforced exactly. If
    ``dest`` already holds those bytes nothing is fetched. ``headers`` are sent with every
    request (e.g. ``Authorization``; httpx drops it on a redirect to another origin).
    ``client`` lets the caller share a connection pool or TLS settings; it is not closed, and
    redirects then follow its ``max_redirects``. ``free_space`` replaces the ``statvfs`` check.

    Raises :class:`~harmony_fleet.errors.DownloadRejected` (or a subclass) when retrying cannot
    help (an unusable URL too: :func:`.policy.check_url`), and a
    :class:`~harmony_fleet.errors.TemporaryError` when the retries or the deadline ran out;
    :class:`~harmony_fleet.errors.ConfigError` for a destination that cannot be written.
    """
    check_url(url)
    digest = sha256.strip().lower()
    if not _SHA256_RE.fullmatch(digest):
        raise DownloadRejected(f"not a SHA-256 hex digest: {sha256!r}")
    if size is not None and size < 0:
        raise DownloadRejected(f"negative size {size} for {url}")
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="download-io")
    job = _Download(
        url,
        Path(dest),
        digest,
        size,
        on_progress=on_progress,
        policy=policy,
        headers=headers,
        free_space=free_space or StatvfsFreeSpace(),
        executor=executor,
    )
    deadline_at = asyncio.get_running_loop().time() + policy.deadline_s
    deadline = asyncio.timeout_at(deadline_at)
    try:
        async with deadline:
            return await job.run(client, deadline_at)
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        last = f"; last error: {job.last_error}" if job.last_error else ""
        raise Timeout(
            f"download of {url} passed its {policy.deadline_s:g} s deadline{last}"
        ) from exc
    finally:
        executor.shutdown(wait=True)
