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
* Bytes come over ``https``: plain ``http`` only from a loopback host or with the device's
  opt-in, a redirect from ``https`` to ``http`` is refused on any hop, and ``user:password@``
  in the URL is refused (:mod:`.urls`, :mod:`.redirects`). Logs, errors and statuses show the
  URL without its query or userinfo, where tokens live.
* An ``flock`` on ``<dest>.lock`` serialises concurrent downloads of one target; the second
  waits, then finds ``dest`` in place and returns without a request.

Throughput: the socket is read in pieces of up to 1 MiB (:mod:`.transport`); pieces are
gathered into ~1 MiB batches, hashed on the loop (``hashlib`` drops the GIL) and written with
``os.writev`` on one worker thread while the loop receives the next batch, and writeback of
the part file is started every 32 MiB so the final fsync is short. Memory stays at two batches
in flight whatever the artifact size. ``docs/downloads.md`` has the measured figures.

Where the code is: this module is the entry point (:func:`download`: arguments, the deadline,
the worker thread); :mod:`.attempts` runs one call's attempts (request, headers, body, verify,
retry); :mod:`.partfile` holds the part file, its sidecar and the write pipeline; :mod:`.policy`
the knobs and the pure retry rules; :mod:`.wrap` the mapping of httpx and OS errors to ours.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Mapping
from pathlib import Path

import httpx

from harmony_fleet.adapters.http.attempts import DownloadJob
from harmony_fleet.adapters.http.partfile import lock_path, meta_path, part_path
from harmony_fleet.adapters.http.policy import DEFAULT_POLICY, DownloadPolicy, check_url
from harmony_fleet.adapters.http.progress import ProgressCallback
from harmony_fleet.adapters.http.space import FreeSpace, StatvfsFreeSpace
from harmony_fleet.adapters.http.urls import (
    HTTPS_ONLY,
    ArtifactAccess,
    check_artifact_url,
    redact_url,
)
from harmony_fleet.errors import DownloadRejected, Timeout

__all__ = ["DEFAULT_POLICY", "download", "lock_path", "meta_path", "part_path"]


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


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
    access: ArtifactAccess = HTTPS_ONLY,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest`` once its SHA-256 (and size) verify.

    ``sha256`` is the expected hex digest; ``size``, when known, is enforced exactly. If
    ``dest`` already holds those bytes nothing is fetched. ``headers`` are sent with every
    request (e.g. ``Authorization``; httpx drops it on a redirect to another origin).
    ``client`` lets the caller share a connection pool or TLS settings; it is not closed, and
    redirects then follow its ``max_redirects``. ``free_space`` replaces the ``statvfs`` check.
    ``access`` says where bytes may come from (:func:`.urls.check_artifact_url`: ``https``,
    plain ``http`` for loopback or with ``allow_http``, no ``https`` -> ``http`` redirect) and
    which extra CA to trust; errors and logs show the URL redacted (:func:`.urls.redact_url`).

    Raises :class:`~harmony_fleet.errors.DownloadRejected` (or a subclass) when retrying cannot
    help (an unusable URL too: :func:`.policy.check_url`), and a
    :class:`~harmony_fleet.errors.TemporaryError` when the retries or the deadline ran out;
    :class:`~harmony_fleet.errors.ConfigError` for a destination that cannot be written.
    """
    check_url(url)
    check_artifact_url(url, access)
    shown = redact_url(url)
    digest = sha256.strip().lower()
    if not _SHA256_RE.fullmatch(digest):
        raise DownloadRejected(f"not a SHA-256 hex digest: {sha256!r}")
    if size is not None and size < 0:
        raise DownloadRejected(f"negative size {size} for {shown}")
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="download-io")
    job = DownloadJob(
        url,
        Path(dest),
        digest,
        size,
        on_progress=on_progress,
        policy=policy,
        headers=headers,
        free_space=free_space or StatvfsFreeSpace(),
        executor=executor,
        access=access,
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
            f"download of {shown} passed its {policy.deadline_s:g} s deadline{last}"
        ) from exc
    finally:
        executor.shutdown(wait=True)
