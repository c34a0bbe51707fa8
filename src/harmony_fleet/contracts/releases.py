"""The release catalogue: which artifact (URL, SHA-256, size) is agent version X.

KV bucket ``fleet_releases``, key = the version (see :func:`release_key`), written by
``fleet release publish``, read by whoever turns a *desired version* into an upgrade marker (the
Kubernetes mode of the operator, where ``Device.spec.agentVersion`` names only a version). A
release is immutable once published: the same version must always mean the same bytes, or two
devices "on 2.0.0" would run different code; ``publish`` refuses a different artifact for an
existing version unless asked to replace it.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from harmony_fleet.contracts.ids import (
    NonNegFloat,
    NonNegInt,
    Sha256Field,
    ShortText,
    VersionField,
    whole,
)
from harmony_fleet.errors import InvalidMessage

RELEASE_SCHEMA_VERSION = 1

#: KV bucket of the catalogue (the other buckets are spelled in :mod:`.subjects`).
BUCKET_RELEASES = "fleet_releases"

#: One entry of a version's skip list: a device id (``edge-07``) or a label and its value
#: (``hardware_model=rpi3``): the devices a rollout of that version must leave alone.
SKIP_ENTRY_PATTERN = whole(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?|[A-Za-z0-9][A-Za-z0-9._/-]{0,62}=[^\n]{0,256})"
)
SkipEntry = Annotated[str, msgspec.Meta(pattern=SKIP_ENTRY_PATTERN, max_length=320)]
#: The most entries one version's skip list may hold.
MAX_SKIP_ENTRIES = 1000
SkipList = Annotated[list[SkipEntry], msgspec.Meta(max_length=MAX_SKIP_ENTRIES)]

_SKIP_RE = re.compile(SKIP_ENTRY_PATTERN)


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
    skip: SkipList = []
    """The version's skip list (:data:`SkipEntry`): signed with the release (the target's
    ``custom.skip``), read by every rollout of it (docs/rollouts.md, pre-flight gates)."""

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


def skip_entry(text: str) -> str:
    """Validate one skip-list entry from a flag; raise InvalidMessage naming ``skip``."""
    if len(text) > 320 or not _SKIP_RE.fullmatch(text):
        raise InvalidMessage(
            "skip",
            f"{text!r} is neither a device id nor a label=value",
            type_name="skip entry",
        )
    return text


def skip_list(value: object) -> tuple[str, ...]:
    """The valid entries of a skip list read from signed metadata (``custom.skip``); anything
    else is left out (only a broken publish could put it there; it then skips nobody)."""
    if not isinstance(value, list):
        return ()
    return tuple(
        e for e in value[:MAX_SKIP_ENTRIES] if isinstance(e, str) and _SKIP_RE.fullmatch(e)
    )
