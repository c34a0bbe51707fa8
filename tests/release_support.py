"""A tuf.ngclient fetcher over NATS for the tests: metadata from the ``fleet_tuf`` bucket,
targets from the ``fleet_artifacts`` object store, through one connection on a thread of its
own (the Updater is synchronous). It reads as whoever its options say; the device's own fetcher
(direct gets only) is the agent's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats.js.errors
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from harmony_fleet.adapters.nats.connection import NatsOptions, connect

BASE = "nats://fleet/"


class NatsFetcher(FetcherInterface):
    def __init__(self, options: NatsOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nc: Any = self._run(connect(options.with_name("test-fetcher")))

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _get(self, url: str) -> bytes:
        kind, _, name = url.removeprefix(BASE).partition("/")
        js = self._nc.jetstream()
        try:
            if kind == "metadata":
                entry = await (await js.key_value("fleet_tuf")).get(name)
                return bytes(entry.value or b"")
            found = await (await js.object_store("fleet_artifacts")).get(name)
            return bytes(found.data or b"")
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.ObjectNotFoundError):
            raise DownloadHTTPError(f"{url} not found", 404) from None

    def _fetch(self, url: str) -> Iterator[bytes]:
        return iter([self._run(self._get(url))])

    def close(self) -> None:
        self._run(self._nc.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


def updater(fetcher: NatsFetcher, state: Path, root: bytes) -> Updater:
    """An ngclient Updater that trusts ``root`` and reads the fleet's repository."""
    (state / "metadata").mkdir(parents=True, exist_ok=True)
    (state / "download").mkdir(exist_ok=True)
    return Updater(
        metadata_dir=str(state / "metadata"),
        metadata_base_url=f"{BASE}metadata/",
        target_dir=str(state / "download"),
        target_base_url=f"{BASE}targets/",
        fetcher=fetcher,
        bootstrap=root,
    )
