"""An ngclient fetcher over NATS: metadata from the ``fleet_tuf`` KV bucket, targets from the
``fleet_artifacts`` object store, both by direct gets (a device may create no consumer).

ngclient is synchronous and runs on a worker thread (``asyncio.to_thread``); each read is a
coroutine handed to the agent's event loop, where its NATS connection lives
(``asyncio.run_coroutine_threadsafe``), and waited for with a deadline. URLs are
``nats://fleet_tuf/<file>`` and ``nats://fleet_artifacts/<sha256>.<target path>``: the names
ngclient asks for (consistent snapshots) are the KV keys and the object names as they are.
A missing key or object is ``DownloadHTTPError(msg, 404)``, which ngclient reads as "there is
no newer root" or "not in the repository". The object's chunks are read one at a time; the
ngclient caller stops reading past the signed length, so an endless object costs one chunk.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

import nats.errors
import nats.js.errors
from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

from harmony_fleet.adapters.nats.fleet_kv import ARTIFACTS, TUF_METADATA

log = logging.getLogger(__name__)

#: The KV bucket holding the signed metadata, and the object store holding the targets (each
#: defined once, in :mod:`~harmony_fleet.adapters.nats.fleet_kv`).
METADATA_BUCKET = TUF_METADATA.name
ARTIFACTS_BUCKET = ARTIFACTS.name
METADATA_URL = f"nats://{METADATA_BUCKET}/"
TARGETS_URL = f"nats://{ARTIFACTS_BUCKET}/"
#: Deadline of one read (its requests tried again within it): longer than a NATS node frozen
#: or a JetStream leader election (10 s and 5-7 s in the chaos tier), short beside a
#: download's own deadline (``download_s``, two hours by default).
GET_TIMEOUT_S = 30.0
#: Deadline of one request inside a read, and the pause before the next try.
REQUEST_TIMEOUT_S = 2.0
RETRY_S = 0.5
_DELETED = {"DEL", "PURGE"}


class NatsFetcher(FetcherInterface):
    """Reads ``nats://`` URLs through ``nc`` (a connected client whose loop is ``loop``)."""

    def __init__(
        self, nc: Any, loop: asyncio.AbstractEventLoop, *, timeout_s: float = GET_TIMEOUT_S
    ) -> None:
        self.nc = nc
        self.loop = loop
        self.timeout_s = timeout_s
        self.gets = 0
        """Direct gets made (for tests and the bench)."""

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url.startswith(METADATA_URL):
            return iter([self._call(self._metadata(url.removeprefix(METADATA_URL)))])
        if url.startswith(TARGETS_URL):
            return self._chunks(url.removeprefix(TARGETS_URL))
        raise DownloadHTTPError(f"{url}: not a location of the fleet's repository", 404)

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        self.gets += 1
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(self.timeout_s)
        except TimeoutError as exc:
            future.cancel()
            raise DownloadError(f"no answer from NATS within {self.timeout_s} s") from exc

    async def _get(self, stream: str, **request: Any) -> Any:
        """One direct get; None when there is no such message (or it is a delete marker).

        An unanswered request (a replica lost, a JetStream leader being elected: 5-7 s on a
        3-node cluster) is tried again every :data:`RETRY_S` while a new try still fits in
        this read's deadline: a blip is not a failed download."""
        js = self.nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s - RETRY_S
        while True:
            try:
                msg = await js.get_msg(stream, direct=True, **request)
                break
            except nats.js.errors.NotFoundError:
                return None
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, TimeoutError) as exc:
                if loop.time() + RETRY_S + REQUEST_TIMEOUT_S > deadline:
                    raise DownloadError(f"direct get on {stream}: {exc!r}") from exc
            except nats.errors.Error as exc:
                raise DownloadError(f"direct get on {stream}: {exc!r}") from exc
            await asyncio.sleep(RETRY_S)  # a retry's pace, not a wait for a condition
        headers = msg.headers or {}
        if headers.get("KV-Operation") in _DELETED or msg.data is None:
            return None
        return msg

    async def _metadata(self, name: str) -> bytes:
        stream = f"KV_{METADATA_BUCKET}"
        msg = await self._get(stream, subject=f"$KV.{METADATA_BUCKET}.{name}")
        if msg is None:
            raise DownloadHTTPError(f"{name}: not in {METADATA_BUCKET}", 404)
        return bytes(msg.data)

    async def _object_info(self, name: str) -> dict[str, Any]:
        encoded = base64.urlsafe_b64encode(name.encode()).decode()
        stream = f"OBJ_{ARTIFACTS_BUCKET}"
        msg = await self._get(stream, subject=f"$O.{ARTIFACTS_BUCKET}.M.{encoded}")
        info: dict[str, Any] = json.loads(msg.data) if msg is not None else {}
        if not info or info.get("deleted"):
            raise DownloadHTTPError(f"{name}: not in {ARTIFACTS_BUCKET}", 404)
        return info

    async def _chunk(self, subject: str, seq: int) -> Any:
        msg = await self._get(f"OBJ_{ARTIFACTS_BUCKET}", seq=seq, subject=subject, next=True)
        if msg is None:
            raise DownloadError(f"{subject}: chunk at or after {seq} missing")
        return msg

    def _chunks(self, name: str) -> Iterator[bytes]:
        info = self._call(self._object_info(name))
        subject = f"$O.{ARTIFACTS_BUCKET}.C.{info['nuid']}"
        seq = 1
        for _ in range(int(info.get("chunks") or 0)):
            msg = self._call(self._chunk(subject, seq))
            seq = int(msg.seq) + 1
            yield bytes(msg.data)
