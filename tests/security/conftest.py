"""Fixtures of the attack suite: a secured server (tests/conftest.py) and real credentials for
every role, issued by the server's own code (``fleet credentials issue`` does the same)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import subjects
from tests.security.support import Attacker, attacker

#: name -> role of the credentials every test gets.
HOLDERS = {"edge-a": "device", "edge-b": "device", "viewer": "viewer", "operator": "operator"}


@pytest.fixture
def creds(nats_server: EmbeddedNats, tmp_path: Path) -> dict[str, Path]:
    return {
        name: nats_server.issue(role, name, tmp_path / f"{name}.creds")
        for name, role in HOLDERS.items()
    }


@pytest.fixture
async def device_a(nats_server: EmbeddedNats, creds: dict[str, Path]) -> AsyncIterator[Attacker]:
    """A client holding device edge-a's credentials (with edge-a's inbox prefix)."""
    client = await attacker(
        nats_server, creds["edge-a"], inbox_prefix=subjects.inbox_prefix("edge-a")
    )
    try:
        yield client
    finally:
        await client.close()
