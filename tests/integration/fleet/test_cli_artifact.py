"""``fleet artifact build``: the file, the manifest, and a clear refusal of a bad version."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.helpers import run_fleet


def test_artifact_build_writes_the_artifact_and_its_manifest(tmp_path: Path) -> None:
    out = run_fleet("artifact", "build", "--version", "4.2.0", "--out", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    artifact = tmp_path / manifest["file"]
    assert manifest["version"] == "4.2.0"
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == manifest["sha256"]
    assert (
        json.loads((tmp_path / "harmony-fleet-agent-4.2.0.manifest.json").read_text()) == manifest
    )
    version = run_fleet("--version")  # the installed CLI, for comparison with the artifact below
    assert version.returncode == 0


def test_artifact_build_refuses_a_bad_version(tmp_path: Path) -> None:
    out = run_fleet("artifact", "build", "--version", "../../etc", "--out", str(tmp_path))
    assert out.returncode == 2
    assert "version" in out.stderr and "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())
