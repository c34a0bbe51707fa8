"""Fixtures for the download tests: a scripted raw server, an artifact, a destination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dl_helpers import Artifact, ScriptedServer, make_artifact


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def artifact() -> Artifact:
    """3 MiB + a bit: several hash+write batches, not a round number."""
    return make_artifact(3 * 1024 * 1024 + 12345)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "out" / "artifact.bin"
