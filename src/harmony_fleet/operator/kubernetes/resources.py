"""Names of the ``Device`` resource, its conditions and their reasons: spelled once, here.

Pure: no Kubernetes import, so the CRD generator, the status functions and their tests share
these names without needing a cluster or a client library.
"""

from __future__ import annotations

import enum
from typing import Final

GROUP: Final = "fleet.harmony.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Device"
LIST_KIND: Final = "DeviceList"
PLURAL: Final = "devices"
SINGULAR: Final = "device"
SHORT_NAMES: Final = ("fdev",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

#: The ``Rollout`` resource: a fleet rollout (docs/rollouts.md) written from Kubernetes.
ROLLOUT_KIND: Final = "Rollout"
ROLLOUT_LIST_KIND: Final = "RolloutList"
ROLLOUT_PLURAL: Final = "rollouts"
ROLLOUT_SINGULAR: Final = "rollout"
ROLLOUT_SHORT_NAMES: Final = ("fro",)
ROLLOUT_CRD_NAME: Final = f"{ROLLOUT_PLURAL}.{GROUP}"

#: Annotation prefix for kopf's own bookkeeping (progress and last-handled spec). Annotations,
#: not ``status``, so that the reflector stays the only writer of ``status``.
ANNOTATION_PREFIX: Final = GROUP

#: Who wrote a marker that came from a Device's spec (``UpgradeMarker.requested_by``).
REQUESTED_BY_PREFIX: Final = "kubernetes:"


class ConditionType(enum.StrEnum):
    """The conditions on ``Device.status.conditions``, in the order they are written."""

    ONLINE = "Online"
    """The operator hears the device's heartbeats."""
    UPGRADE_PROGRESSING = "UpgradeProgressing"
    """An upgrade is under way (True) or the latest one ended (False, reason = its phase)."""
    ROLLED_BACK = "RolledBack"
    """The latest upgrade was started and then reverted (reason = the agent's error code)."""
    SPEC_VALID = "SpecValid"
    """``spec`` could be turned into an upgrade marker (False: reason and message say why)."""


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class SpecReason(enum.StrEnum):
    """Reasons of the ``SpecValid`` condition."""

    ACCEPTED = "Accepted"
    NO_DESIRED_VERSION = "NoDesiredVersion"
    INVALID_NAME = "InvalidName"
    INVALID_VERSION = "InvalidVersion"
    INVALID_SPEC = "InvalidSpec"
    UNKNOWN_RELEASE = "UnknownRelease"
    NAME_TAKEN = "NameTaken"
    """A ``Rollout``: a rollout of that name exists that this resource did not create."""
    IMMUTABLE = "Immutable"
    """A ``Rollout``: a field other than the levers changed after creation."""
