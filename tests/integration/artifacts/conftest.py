"""Fixtures for artifact tests: one real probe artifact per module, fresh copies per test.

Building takes well under a second, but running a cold artifact extracts ~800 files, so tests
that need a first start get their own copy of the module's artifact (the extraction directory is
keyed on the artifact's location, so a copy in a new directory starts cold).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from artifact_support import PROBE_ENTRY, PROBE_FAULTS, PROBE_VERSION, Built

from harmony_fleet.artifacts import build_artifact


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    manifest = build_artifact(PROBE_VERSION, out, faults=PROBE_FAULTS, entry=PROBE_ENTRY)
    return Built(out / manifest.file, manifest)


@pytest.fixture
def fresh_artifact(built: Built, tmp_path: Path) -> Path:
    """A copy of the module's artifact in an empty directory: its first run is a cold start."""
    target = tmp_path / "versions" / PROBE_VERSION / built.path.name
    target.parent.mkdir(parents=True)
    shutil.copy2(built.path, target)
    return target
