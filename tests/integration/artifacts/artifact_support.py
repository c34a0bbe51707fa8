"""Helpers for the artifact tests: run a built artifact as a real subprocess and read its probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_fleet.artifacts import ArtifactManifest

PROBE_ENTRY = "harmony_fleet.artifacts._probe:main"
PROBE_VERSION = "2.0.0-probe.1"
PROBE_FAULTS = ("no-heartbeat",)
#: The interpreter behind the venv: it has no harmony_fleet installed, and with ``-S`` it has no
#: site-packages at all, so whatever the artifact imports must come from the artifact.
BASE_PYTHON = os.path.realpath(sys.executable)
RUN_TIMEOUT = 60


@dataclass(frozen=True)
class Built:
    """An artifact built once for the module, with its manifest."""

    path: Path
    manifest: ArtifactManifest


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without our extraction override, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "HARMONY_FLEET_EXTRACT_DIR"}
    env.update(extra or {})
    return env


def run_artifact(
    artifact: Path,
    *args: str,
    python: str = BASE_PYTHON,
    flags: tuple[str, ...] = ("-S",),
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``python <flags> artifact args`` to completion, capturing text output."""
    return subprocess.run(
        [python, *flags, str(artifact), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=clean_env(env),
        check=False,
        **kwargs,
    )


def probe(artifact: Path, *args: str, **kwargs: Any) -> dict[str, Any]:
    """Run the probe artifact and return its JSON report; fail with its stderr otherwise."""
    proc = run_artifact(artifact, *args, **kwargs)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report
