"""Versioned, single-file, executable agent artifacts (zipapps) with a manifest beside them.

``build_artifact("2.0.0", Path("dist"))`` writes ``dist/harmony-fleet-agent-2.0.0.pyz`` (run it as
``python3 harmony-fleet-agent-2.0.0.pyz agent run ...``) and
``dist/harmony-fleet-agent-2.0.0.manifest.json``. See docs/artifacts.md for the layout, the
bootstrap, reproducibility and measurements.

This package sits beside ``agent`` and ``operator``: it may use contracts, errors and adapters,
and neither the agent nor the operator imports it (they handle artifacts as opaque files).

The names below are loaded on first use, so that importing a submodule inside an artifact
(``harmony_fleet.artifacts._probe``) does not pay for the builder's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harmony_fleet.artifacts.builder import (
        DEFAULT_ENTRY,
        DEFAULT_NAME,
        build_artifact,
        runtime_distributions,
    )
    from harmony_fleet.artifacts.manifest import (
        MANIFEST,
        ArtifactManifest,
        encode_manifest,
        read_manifest,
    )

_LAZY = {
    "DEFAULT_ENTRY": "builder",
    "DEFAULT_NAME": "builder",
    "build_artifact": "builder",
    "runtime_distributions": "builder",
    "MANIFEST": "manifest",
    "ArtifactManifest": "manifest",
    "encode_manifest": "manifest",
    "read_manifest": "manifest",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "DEFAULT_ENTRY",
    "DEFAULT_NAME",
    "MANIFEST",
    "ArtifactManifest",
    "build_artifact",
    "encode_manifest",
    "read_manifest",
    "runtime_distributions",
]
