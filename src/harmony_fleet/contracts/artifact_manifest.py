"""The manifest written beside every artifact: what an operator needs to publish and check it.

The upgrade marker (``contracts.upgrade.UpgradeMarker``) carries a URL, a SHA-256 and a size; the
manifest is where those come from, so it is strictly typed with the same field patterns as the
wire contracts. It also says where the artifact can run (``python_requires``, ``platform``),
because an artifact holding compiled wheels (msgspec) only works on the interpreter and machine it
was built on, and a person choosing a version for a device must see that before the device does.

A file read by other programs and other versions (``fleet artifact build`` writes it, CI and
people read it): versioned with ``v``, exported as JSON Schema, pinned by a golden fixture. The
file I/O is ``harmony_fleet.artifacts.manifest``'s.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from harmony_fleet.contracts._codec import Codec
from harmony_fleet.contracts.ids import NonNegInt, Sha256Field, VersionField

MANIFEST_SCHEMA_VERSION = 1

ArtifactName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class ArtifactManifest(msgspec.Struct, frozen=True, kw_only=True):
    """``<out>/<name>-<version>.manifest.json``: identity, integrity and compatibility of one build.

    ``sha256`` and ``size`` describe the ``.pyz`` file byte for byte. ``payload_digest`` is the
    digest the bootstrap keys its extraction directory on (it is computed over the zip's entries,
    so the artifact can carry it inside itself; the file's own SHA-256 cannot).
    """

    v: int = MANIFEST_SCHEMA_VERSION
    name: ArtifactName
    version: VersionField
    file: str
    """The artifact's file name, relative to the manifest's directory."""
    sha256: Sha256Field
    size: NonNegInt
    python_requires: str
    """A PEP 440 specifier such as ``>=3.11,<3.12``: pinned to one minor version when the
    payload holds compiled extensions, which are built for exactly one CPython ABI."""
    platform: str
    """``sysconfig.get_platform()`` of the build (``linux-x86_64``), or ``any`` for pure Python."""
    wheel_tags: tuple[str, ...] = ()
    """The ``Tag:`` lines of every compiled distribution inside (``cp311-cp311-manylinux...``)."""
    entry: str
    """``module:function`` the bootstrap calls with the command-line arguments."""
    faults: tuple[str, ...] = ()
    """Named faults baked into this build (demo and fault-matrix tests only; release: empty)."""
    dependencies: tuple[str, ...] = ()
    """``name==version`` of every distribution inside, sorted: the inputs of the hash."""
    payload_digest: Sha256Field
    built_at: str
    """UTC build time, ISO 8601. Informative only: it is not part of the artifact's bytes."""


MANIFEST = Codec(ArtifactManifest)
