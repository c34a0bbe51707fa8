"""The shape of a ``Device`` as the API sees it: TypedDicts for raw bodies (as kopf does).

Kubernetes speaks camelCase and RFC 3339 time strings; the contracts speak snake_case and epoch
seconds. These types are the Kubernetes side; :mod:`.statuses` converts. ``total=False`` where
the API may omit a key.
"""

from __future__ import annotations

from typing import TypedDict


class ConditionBody(TypedDict):
    """One entry of ``status.conditions`` (the shape of ``metav1.Condition``)."""

    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class UpgradeBody(TypedDict, total=False):
    """``status.upgrade``: the device's latest upgrade, as the operator judges it."""

    id: str
    phase: str
    targetVersion: str
    message: str
    startedAt: str
    updatedAt: str
    watchUntil: str


class DeviceStatusBody(TypedDict, total=False):
    """``status``: written only by the operator's reflector."""

    currentVersion: str
    upgrade: UpgradeBody
    conditions: list[ConditionBody]


class DeviceSpecBody(TypedDict, total=False):
    """``spec``: written by people and tools; the operator only reads it."""

    agentVersion: str
    force: bool
    timeouts: dict[str, float]
    """camelCase fields of ``UpgradeTimeouts`` (``selfTestSeconds``, ``watchSeconds``, ...)."""
