"""Building blocks of the fixtures of every tier that runs real agents: artifacts built once per
module or session, and a fleet started with them, then stopped with a check that no agent
process outlived it (an orphaned agent is a bug of the stop path, not noise)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from harmony_fleet.artifacts import build_artifact
from harmony_fleet.artifacts.manifest import ArtifactManifest
from harmony_fleet.testing.localfleet import LocalFleet

#: Artifacts built for a module or a session: the folder, and version -> manifest.
Built = tuple[Path, dict[str, ArtifactManifest]]

F = TypeVar("F", bound=LocalFleet)


def build_versions(
    tmp_path_factory: pytest.TempPathFactory, builds: Mapping[str, tuple[str, ...]] | Iterable[str]
) -> Built:
    """Real agent artifacts: of each version of ``builds``, with the faults it maps to."""
    out = tmp_path_factory.mktemp("artifacts")
    faults = builds if isinstance(builds, Mapping) else dict.fromkeys(builds, ())
    return out, {v: build_artifact(v, out, faults=f) for v, f in faults.items()}


def assert_no_agent_left(fleet: LocalFleet, names: Iterable[str] | None = None) -> None:
    """No agent process of ``names`` (every device of the fleet by default) is running."""
    left = [
        pid for d in (fleet.devices if names is None else names) for pid in fleet.agent_processes(d)
    ]
    assert not left, f"agent processes left running: {left}"


@contextlib.asynccontextmanager
async def running(fleet: F, built: Built, *, check_left: bool = True) -> AsyncIterator[F]:
    """``fleet`` started, knowing the ``built`` artifacts; stopped at the end whatever the test
    did, then (``check_left``) no agent process may be left."""
    out, manifests = built
    await fleet.start()
    for manifest in manifests.values():
        fleet.adopt(manifest, out)
    try:
        yield fleet
    finally:
        await fleet.stop()
        if check_left:
            assert_no_agent_left(fleet)
