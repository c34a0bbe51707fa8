"""The NATS fetcher rides through a blip (a direct get unanswered while a JetStream leader is
elected) and still fails, within its deadline, when the blip lasts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import nats.errors
import pytest
from tuf.api.exceptions import DownloadError

from harmony_fleet.adapters.tuf.fetcher import METADATA_URL, NatsFetcher


@dataclass
class Msg:
    data: bytes
    headers: dict[str, str] | None = None


class FlakyJetStream:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    async def get_msg(self, stream: str, **request: Any) -> Msg:
        self.calls += 1
        if self.calls <= self.failures:
            raise nats.errors.NoRespondersError
        return Msg(b'{"signed": {}}')


class FakeNats:
    def __init__(self, js: FlakyJetStream) -> None:
        self.js = js

    def jetstream(self, **opts: Any) -> FlakyJetStream:
        return self.js


async def _read(fetcher: NatsFetcher) -> bytes:
    return await asyncio.to_thread(lambda: b"".join(fetcher.fetch(METADATA_URL + "1.root.json")))


async def test_a_read_unanswered_twice_is_tried_again_and_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("harmony_fleet.adapters.tuf.fetcher.RETRY_S", 0.01)
    js = FlakyJetStream(2)
    fetcher = NatsFetcher(FakeNats(js), asyncio.get_running_loop(), timeout_s=10.0)
    assert await _read(fetcher) == b'{"signed": {}}'
    assert js.calls == 3


async def test_a_blip_longer_than_the_deadline_is_a_download_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("harmony_fleet.adapters.tuf.fetcher.RETRY_S", 0.01)
    monkeypatch.setattr("harmony_fleet.adapters.tuf.fetcher.REQUEST_TIMEOUT_S", 0.05)
    js = FlakyJetStream(10**9)
    fetcher = NatsFetcher(FakeNats(js), asyncio.get_running_loop(), timeout_s=0.5)
    with pytest.raises(DownloadError):
        await _read(fetcher)
    assert js.calls > 1
