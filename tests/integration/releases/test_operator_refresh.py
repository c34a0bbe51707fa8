"""The operator's release refresh (``fleet operator --tuf-online-keys``) with the operator's
own credentials against a real server: an expired timestamp is re-signed with the online keys
and a real ngclient accepts the repository again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.release_support import NatsFetcher, updater
from tuf.api.exceptions import ExpiredMetadataError

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.adapters.tuf.published import current_names, push_metadata
from harmony_fleet.adapters.tuf.repository import target_path
from harmony_fleet.operator.release_refresh import ReleaseRefresh
from harmony_fleet.testing.releases import LocalReleases


@pytest.fixture
async def operator_nc(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[NatsClient]:
    creds = nats_server.issue("operator", "operator", tmp_path / "operator.creds")
    options = NatsOptions(
        servers=(nats_server.url,), creds_file=str(creds), tls_ca_file=str(nats_server.auth.ca_file)
    )
    client = await connect(options.with_name("operator"))
    try:
        yield client
    finally:
        await client.close()


async def test_the_operator_re_signs_an_expired_timestamp_with_the_online_keys(
    nats_server: EmbeddedNats, nc: NatsClient, operator_nc: NatsClient, tmp_path: Path
) -> None:
    releases = LocalReleases.init(tmp_path / "repo")
    source = tmp_path / "agent.pyz"
    source.write_bytes(b"agent 2.0.0")
    await releases.publish(nc, source, "2.0.0")
    stale = releases.repository()
    past = datetime.now(UTC) - timedelta(days=2)
    stale.now = lambda: past
    stale.refresh(force=True)  # signed two days ago: expired yesterday
    await push_metadata(nc, stale.store, current_names(stale.store))

    fetcher = await asyncio.to_thread(NatsFetcher, nats_server.client_options())
    try:
        root = releases.trust_root.read_bytes()
        with pytest.raises(ExpiredMetadataError):
            await asyncio.to_thread(updater(fetcher, tmp_path / "before", root).refresh)

        refresh = ReleaseRefresh(tmp_path / "repo" / "keys" / "online.keys.json")
        assert await refresh.once(operator_nc) == ["timestamp"]  # the snapshot has 5 days left
        assert await refresh.once(operator_nc) == []  # nothing due any more

        client = updater(fetcher, tmp_path / "after", root)
        await asyncio.to_thread(client.refresh)
        assert client.get_targetinfo(target_path("2.0.0")) is not None
    finally:
        await asyncio.to_thread(fetcher.close)


async def test_without_a_published_repository_a_round_does_nothing(
    operator_nc: NatsClient, tmp_path: Path
) -> None:
    releases = LocalReleases.init(tmp_path / "repo")  # made, never published
    refresh = ReleaseRefresh(releases.folder / "keys" / "online.keys.json")
    assert await refresh.once(operator_nc) == []
