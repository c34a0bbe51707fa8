"""Identifier and version types, with strict patterns.

A device id ends up in a NATS subject token, a KV key, a file name, a systemd unit name and a
Kubernetes resource name, so it is a DNS label: lowercase letters, digits and ``-``, 1 to 63
characters, starting and ending with a letter or digit. A version ends up in a directory name
under ``versions/``: letters, digits, ``.``, ``+``, ``_``, ``-``, at most 64 characters, no
``..`` and no ``/``. Both patterns are checked on every decode, so a hostile or broken message
can never name a path outside the agent's prefix or a subject outside the device's own.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, NewType

import msgspec

from harmony_fleet.errors import InvalidMessage

DEVICE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
VERSION_PATTERN = r"^(?!.*\.\.)[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"
INSTANCE_ID_PATTERN = r"^[0-9a-f]{32}$"
UPGRADE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"

DeviceId = NewType("DeviceId", str)
Version = NewType("Version", str)
InstanceId = NewType("InstanceId", str)
UpgradeId = NewType("UpgradeId", str)

# Annotated forms used inside wire structs: msgspec checks them while decoding.
DeviceIdField = Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN, max_length=63)]
VersionField = Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN, max_length=64)]
InstanceIdField = Annotated[str, msgspec.Meta(pattern=INSTANCE_ID_PATTERN)]
UpgradeIdField = Annotated[str, msgspec.Meta(pattern=UPGRADE_ID_PATTERN, max_length=64)]
Sha256Field = Annotated[str, msgspec.Meta(pattern=SHA256_PATTERN)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
ShortText = Annotated[str, msgspec.Meta(max_length=4096)]
LabelKey = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")]
LabelValue = Annotated[str, msgspec.Meta(max_length=256)]

_DEVICE_RE = re.compile(DEVICE_ID_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_UPGRADE_RE = re.compile(UPGRADE_ID_PATTERN)
_SHA_RE = re.compile(SHA256_PATTERN)


def device_id(value: str) -> DeviceId:
    """Validate a device id from a flag or a file; raise InvalidMessage naming ``device_id``."""
    if not _DEVICE_RE.match(value):
        raise InvalidMessage(
            "device_id",
            f"{value!r} is not a valid device id (lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit)",
            type_name="device id",
        )
    return DeviceId(value)


def version(value: str) -> Version:
    """Validate a version string; raise InvalidMessage naming ``version``."""
    if not _VERSION_RE.match(value):
        raise InvalidMessage(
            "version",
            f"{value!r} is not a valid version (letters, digits, '.', '+', '_', '-', "
            "at most 64 characters, no '..' or '/')",
            type_name="version",
        )
    return Version(value)


def upgrade_id(value: str) -> UpgradeId:
    """Validate an upgrade id; raise InvalidMessage naming ``upgrade_id``."""
    if not _UPGRADE_RE.match(value):
        raise InvalidMessage(
            "upgrade_id", f"{value!r} is not a valid upgrade id", type_name="upgrade id"
        )
    return UpgradeId(value)


def sha256_hex(value: str) -> str:
    """Validate a lowercase hex SHA-256 (uppercase is accepted and folded)."""
    folded = value.strip().lower()
    if not _SHA_RE.match(folded):
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
