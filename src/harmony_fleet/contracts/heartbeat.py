"""The heartbeat: what every agent instance publishes every interval.

It carries everything the operator's commit decision needs: which device, which process start
(``instance_id``), which version, and in which role (the service's ``main`` instance, or an
upgrade ``candidate`` started beside it). ``upgrade_id`` is set on a candidate's heartbeats, so the
operator can tell which upgrade a candidate belongs to.
"""

from __future__ import annotations

import enum

import msgspec

from harmony_fleet.contracts.ids import (
    DeviceIdField,
    InstanceIdField,
    LabelKey,
    LabelValue,
    NonNegFloat,
    NonNegInt,
    UpgradeIdField,
    VersionField,
)

HEARTBEAT_SCHEMA_VERSION = 1


class Role(enum.StrEnum):
    """Which part an agent instance plays on its device."""

    MAIN = "main"
    CANDIDATE = "candidate"


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """Published on ``fleet.<device_id>.heartbeat`` every interval (with jitter)."""

    v: int = HEARTBEAT_SCHEMA_VERSION
    device_id: DeviceIdField
    instance_id: InstanceIdField
    agent_version: VersionField
    role: Role
    seq: NonNegInt
    sent_at: NonNegFloat
    """Unix time in seconds when the agent sent it (its own clock: informative only)."""
    uptime_s: NonNegFloat
    interval_s: NonNegFloat = 5.0
    """The sender's heartbeat interval, so the operator can judge silence per device."""
    upgrade_id: UpgradeIdField | None = None
    labels: dict[LabelKey, LabelValue] = {}
