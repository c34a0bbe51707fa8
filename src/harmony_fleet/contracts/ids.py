"""Identifier and version types, with strict patterns.

A device id ends up in a NATS subject token, a KV key, a file name, a systemd unit name and a
Kubernetes resource name, so it is a DNS label: lowercase letters, digits and ``-``, 1 to 63
characters, starting and ending with a letter or digit. A version ends up in a directory name
under ``versions/``: letters, digits, ``.``, ``+``, ``_``, ``-``, at most 64 characters, no
``..`` and no ``/``. Both patterns are checked on every decode, so a hostile or broken message
can never name a path outside the agent's prefix or a subject outside the device's own.

The wire fields carry the ``NewType``s (``DeviceIdField`` is an annotated :data:`DeviceId`), so a
decoded value is already typed: nothing re-casts ``hb.instance_id`` to an :data:`InstanceId`.

Every pattern matches the *whole* string (:func:`whole`): Python's ``$`` also matches before a
final newline, so ``^edge-01$`` alone would accept ``"edge-01\n"``, which msgspec applies with
the same rules; a newline in a subject token or a file name is exactly what these patterns are
there to keep out.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, NewType

import msgspec

from harmony_fleet.errors import InvalidMessage


def whole(body: str) -> str:
    """A pattern that matches ``body`` against the whole string, and nothing else (group an
    alternation in ``body`` yourself).

    ``$(?!\n)`` rather than ``\\Z``: the exported JSON Schema uses the same pattern, and JSON
    Schema's regex dialect (ECMA-262) has no ``\\Z``; there ``$`` is already the very end and the
    lookahead changes nothing, in Python it refuses the final newline ``$`` would let through.
    """
    return rf"^{body}$(?!\n)"


DEVICE_ID_PATTERN = whole(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
VERSION_PATTERN = whole(r"(?!.*\.\.)[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
INSTANCE_ID_PATTERN = whole(r"[0-9a-f]{32}")
UPGRADE_ID_PATTERN = whole(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SHA256_PATTERN = whole(r"[0-9a-f]{64}")
LABEL_KEY_PATTERN = whole(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")

DeviceId = NewType("DeviceId", str)
Version = NewType("Version", str)
InstanceId = NewType("InstanceId", str)
UpgradeId = NewType("UpgradeId", str)

# Annotated forms used inside wire structs: msgspec checks them while decoding, and the decoded
# value has the NewType (msgspec sees through NewType to ``str``).
DeviceIdField = Annotated[DeviceId, msgspec.Meta(pattern=DEVICE_ID_PATTERN, max_length=63)]
VersionField = Annotated[Version, msgspec.Meta(pattern=VERSION_PATTERN, max_length=64)]
InstanceIdField = Annotated[InstanceId, msgspec.Meta(pattern=INSTANCE_ID_PATTERN)]
UpgradeIdField = Annotated[UpgradeId, msgspec.Meta(pattern=UPGRADE_ID_PATTERN, max_length=64)]
Sha256Field = Annotated[str, msgspec.Meta(pattern=SHA256_PATTERN)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
ShortText = Annotated[str, msgspec.Meta(max_length=4096)]
LabelKey = Annotated[str, msgspec.Meta(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, msgspec.Meta(max_length=256)]

_DEVICE_RE = re.compile(DEVICE_ID_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_UPGRADE_RE = re.compile(UPGRADE_ID_PATTERN)
_SHA_RE = re.compile(SHA256_PATTERN)


def device_id(value: str) -> DeviceId:
    """Validate a device id from a flag or a file; raise InvalidMessage naming ``device_id``."""
    if not _DEVICE_RE.fullmatch(value):
        raise InvalidMessage(
            "device_id",
            f"{value!r} is not a valid device id (lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit)",
            type_name="device id",
        )
    return DeviceId(value)


def version(value: str) -> Version:
    """Validate a version string; raise InvalidMessage naming ``version``."""
    if not _VERSION_RE.fullmatch(value):
        raise InvalidMessage(
            "version",
            f"{value!r} is not a valid version (letters, digits, '.', '+', '_', '-', "
            "at most 64 characters, no '..' or '/')",
            type_name="version",
        )
    return Version(value)


def upgrade_id(value: str) -> UpgradeId:
    """Validate an upgrade id; raise InvalidMessage naming ``upgrade_id``."""
    if not _UPGRADE_RE.fullmatch(value):
        raise InvalidMessage(
            "upgrade_id", f"{value!r} is not a valid upgrade id", type_name="upgrade id"
        )
    return UpgradeId(value)


def sha256_hex(value: str) -> str:
    """Validate a lowercase hex SHA-256 (uppercase is accepted and folded)."""
    folded = value.strip().lower()
    if not _SHA_RE.fullmatch(folded):
        raise InvalidMessage(
            "sha256", f"{value!r} is not a 64-character hex SHA-256", type_name="sha256"
        )
    return folded


def new_instance_id() -> InstanceId:
    """A fresh id for one process start of an agent."""
    return InstanceId(uuid.uuid4().hex)


def new_upgrade_id() -> UpgradeId:
    """A fresh upgrade id: time-ordered prefix for humans, random suffix for uniqueness."""
    return UpgradeId("u" + uuid.uuid4().hex[:20])
