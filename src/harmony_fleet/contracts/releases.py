"""The release catalogue: which artifact (URL, SHA-256, size) is agent version X.

KV bucket ``fleet_releases``, key = the version (see :func:`release_key`), written by
``fleet release publish``, read by whoever turns a *desired version* into an upgrade marker (the
Kubernetes mode of the operator, where ``Device.spec.agentVersion`` names only a version). A
release is immutable once published: the same version must always mean the same bytes, or two
devices "on 2.0.0" would run different code; ``publish`` refuses a different artifact for an
existing version unless asked to replace it.
"""

from __future__ import annotations

import msgspec

from harmony_fleet.contracts.ids import NonNegFloat, NonNegInt, Sha256Field, ShortText, VersionField

RELEASE_SCHEMA_VERSION = 1

#: KV bucket of the catalogue (the other buckets are spelled in :mod:`.subjects`).
BUCKET_RELEASES = "fleet_releases"


class Release(msgspec.Struct, frozen=True, kw_only=True):
    """One published agent version and the artifact that is that version."""

    v: int = RELEASE_SCHEMA_VERSION
    version: VersionField
    artifact_url: ShortText
    sha256: Sha256Field
    size: NonNegInt | None = None
    published_at: NonNegFloat
    published_by: ShortText = ""
    notes: ShortText = ""

    def same_artifact(self, other: Release) -> bool:
        """True when both name the same bytes at the same place (publishing again is a no-op)."""
        return (self.version, self.artifact_url, self.sha256, self.size) == (
            other.version,
            other.artifact_url,
            other.sha256,
            other.size,
        )


def release_key(version: str) -> str:
    """The KV key of ``version``.

    NATS KV keys allow ``[-/_=.a-zA-Z0-9]`` but a version may contain ``+`` (semver build
    metadata). ``=`` never occurs in a version, so mapping ``+`` to ``=`` is injective.
    """
    return version.replace("+", "=")


def version_of_key(key: str) -> str:
    """Inverse of :func:`release_key`."""
    return key.replace("=", "+")
