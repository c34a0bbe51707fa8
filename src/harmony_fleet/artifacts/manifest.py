"""Reading and writing the manifest beside every artifact.

Its format, and why it looks as it does, is a contract: ``contracts.artifact_manifest``
(re-exported here for the artifact builder's callers).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from harmony_fleet.contracts.artifact_manifest import (
    MANIFEST,
    MANIFEST_SCHEMA_VERSION,
    ArtifactManifest,
    ArtifactName,
)
from harmony_fleet.errors import InvalidMessage, NotFound

__all__ = [
    "MANIFEST",
    "MANIFEST_SCHEMA_VERSION",
    "ArtifactManifest",
    "ArtifactName",
    "encode_manifest",
    "read_manifest",
]

_format = msgspec.json.format


def encode_manifest(manifest: ArtifactManifest) -> bytes:
    """Indented JSON with a trailing newline: the file is read by people as well as programs."""
    return _format(msgspec.json.encode(manifest), indent=2) + b"\n"


def read_manifest(path: Path) -> ArtifactManifest:
    """Read and strictly decode a manifest file; raise NotFound or InvalidMessage."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"artifact manifest {path} does not exist") from exc
    except OSError as exc:
        raise InvalidMessage(
            "$", f"cannot read {path}: {exc}", type_name="ArtifactManifest"
        ) from exc
    return MANIFEST.decode(data)
