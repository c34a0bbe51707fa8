"""Shared fixtures: a real nats-server per test on a free port with a temporary store.

The server is provisioned as `fleet server` provisions it (the fleet's KV buckets and log stream,
by `EmbeddedNats`'s bootstrap), so tests that start agents before any operator find them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream; ``.stop()``/``.start()`` restart it on the same port."""
    server = EmbeddedNats(
        store_dir=tmp_path / "nats",
        log_file=tmp_path / "nats.log",
        extra_args=["-V"] if os.environ.get("NATS_TRACE") else [],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_options(nats_server: EmbeddedNats) -> NatsOptions:
    return NatsOptions(servers=(nats_server.url,), reconnect_wait_s=0.2)


@pytest.fixture
async def nc(nats_options: NatsOptions) -> AsyncIterator[NatsClient]:
    """A plain client connection for the test itself."""
    client = await connect(nats_options.with_name("test"))
    try:
        yield client
    finally:
        await client.close()
