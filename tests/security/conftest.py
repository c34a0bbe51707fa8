"""Fixtures of the attack suite: a secured server (tests/conftest.py) and real credentials for
every role, issued by the server's own code (``fleet credentials issue`` does the same)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import subjects
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from tests.security.support import Attacker, attacker, tls_options

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


@pytest.fixture
async def operator(nats_server: EmbeddedNats, creds: dict[str, Path]) -> AsyncIterator[Operator]:
    """A real operator holding the operator's credentials (so admitting ``issued`` devices)."""
    op = Operator(
        OperatorConfig(
            nats=tls_options(nats_server, creds["operator"]),
            flush_interval_s=0.1,
            presence=PresencePolicy(refresh_s=1.0),
        )
    )
    task = asyncio.ensure_future(op.run())
    try:
        await asyncio.wait_for(op.ready.wait(), 15)
        yield op
    finally:
        op.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
