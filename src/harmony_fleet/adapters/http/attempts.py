"""One download's attempts: request, check the answer, receive the body, verify, retry.

:class:`DownloadJob` holds the state of one :func:`~harmony_fleet.adapters.http.download` call
(the part file, counters, the progress throttle) and runs its attempt loop: a ``Range`` request
to resume, the status and headers checked against what was asked (206 from the right byte, a
200 that ignored ``Range``, 416 for a part that is whole already, retryable statuses), the body
received with a stall timeout per read and compared with ``Content-Length`` and the declared
size, free space checked before the body, and retries with backoff inside one deadline. The
rules as a whole: :mod:`.downloader`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from harmony_fleet.adapters.http.lock import exclusive_lock
from harmony_fleet.adapters.http.partfile import (
    PartFile,
    WritePipeline,
    file_has_sha256,
    lock_path,
)
from harmony_fleet.adapters.http.policy import DownloadPolicy, backoff_delay, parse_retry_after
from harmony_fleet.adapters.http.progress import ProgressCallback, ProgressThrottle
from harmony_fleet.adapters.http.redirects import send_following_redirects
from harmony_fleet.adapters.http.space import FreeSpace
from harmony_fleet.adapters.http.transport import make_transport
from harmony_fleet.adapters.http.urls import (
    HTTPS_ONLY,
    ArtifactAccess,
    redact_library_logs,
    redact_url,
)
from harmony_fleet.adapters.http.wrap import RETRY_STATUSES, wrap_httpx_error, wrap_os_error
from harmony_fleet.errors import (
    DownloadInterrupted,
    HTTPStatusError,
    InsufficientSpace,
    IntegrityError,
    TemporaryError,
    Timeout,
    TooLarge,
)

__all__ = ["DownloadJob", "RestartFromZero", "content_length", "content_range"]

log = logging.getLogger(__name__)
redact_library_logs("httpx", "httpcore")  # they log request URLs, tokens included

CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)

T = TypeVar("T")


class RestartFromZero(Exception):
    """Internal: the partial bytes are unusable; start again from byte 0 without waiting."""


class DownloadJob:
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
        access: ArtifactAccess = HTTPS_ONLY,
    ) -> None:
        self.url = url
        self.shown = redact_url(url)
        """The URL as logs, errors and statuses show it: no userinfo, no query (tokens)."""
        self.access = access
        self.dest = dest
        self.sha256 = sha256
        self.size = size
        self.policy = policy
        self.headers = dict(headers or {})
        self.free_space = free_space
        self.executor = executor
        self.part = PartFile(dest, url, sha256)
        self.pipeline = WritePipeline(self.part, executor)
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
            return await self._io(file_has_sha256, self.dest, self.sha256, self.size)
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
                        transport=make_transport(ca_file=self.access.ca_file),
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
            except RestartFromZero as exc:
                log.info("restarting from zero: %s", exc, extra={"url": self.shown})
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
                        extra={"url": self.shown},
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
                        f"download of {self.shown} gave up after {retries} retries: the next "
                        f"one (in {delay:.1f} s) would pass the deadline; last error: {exc}",
                        retry_after=delay,
                    ) from exc
                self.progress.retries += 1
                log.warning(
                    "download attempt failed, retrying in %.2f s: %s",
                    delay,
                    exc,
                    extra={"url": self.shown, "retry": retries + 1, "bytes": self.part.length},
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
            request = client.build_request("GET", self.url, headers=headers, timeout=self.timeout)
            response = await send_following_redirects(client, request, self.access)
            try:
                await self._take(response, offset)
            finally:
                await response.aclose()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL is no HTTPError
            raise wrap_httpx_error(exc, self.shown) from exc
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
        length = content_length(response)
        total = None if length is None else offset + length
        if status == 206:
            try:
                start, range_total = content_range(response)
                if start != offset:
                    raise RestartFromZero(f"asked for bytes from {offset}, got from {start}")
            except RestartFromZero as exc:
                if offset == 0:  # nothing to restart: a broken answer, retried with backoff
                    raise DownloadInterrupted(f"unusable 206 from {self.shown}: {exc}") from None
                raise
            self.part.from_earlier = offset > 0
            total = range_total if range_total is not None else total
        elif status == 200:
            total = length
            if offset > 0:
                log.info("server ignored Range; restarting from zero", extra={"url": self.shown})
                await self._part_io(self.part.truncate)
                offset = 0
        elif status == 416 and offset > 0:
            if self.part.hasher.copy().hexdigest() == self.sha256:
                self.part.from_earlier = True  # the leftover was whole already
                return
            raise RestartFromZero(f"HTTP 416 for bytes from {offset}")
        elif status in RETRY_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            raise DownloadInterrupted(f"HTTP {status} from {self.shown}", retry_after=retry_after)
        else:
            raise HTTPStatusError(self.shown, status)

        limit = self.size if self.size is not None else self.policy.max_bytes
        if total is not None and limit is not None and total > limit:
            raise TooLarge(f"{self.shown} announces {total} bytes, more than the {limit} allowed")
        if self.size is not None and total is not None and total < self.size:
            raise IntegrityError("size", str(self.size), str(total))
        if self.size is None:
            self.progress.bytes_total = total
            if total is not None:
                self._check_space(total - offset)

        received = await self._receive(response, offset, limit)
        if length is not None and received < length:
            raise DownloadInterrupted(
                f"body from {self.shown} ended early: {received} of {length} bytes"
            )
        if self.size is not None and offset + received < self.size:
            raise DownloadInterrupted(
                f"body from {self.shown} ended at byte {offset + received} of {self.size}"
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
                        f"stalled: no bytes from {self.shown} for {stall:g} s"
                    ) from exc
                n = len(piece)
                received += n
                if limit is not None and offset + received > limit:
                    raise TooLarge(f"{self.shown} sent more than the {limit} bytes allowed")
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


def content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def content_range(response: httpx.Response) -> tuple[int, int | None]:
    """(first byte, complete length or None) of a 206, or a restart when it makes no sense."""
    match = CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None:
        raise RestartFromZero("206 without a usable Content-Range")
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)
