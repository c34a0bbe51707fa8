"""The device registry record: what the operator knows of one device.

KV bucket ``fleet_devices``, key = device id, written only by the operator. Writes are coalesced:
a record changes when something a person would care about changes (version, online, instances,
upgrade phase), plus a slow refresh of ``last_seen``, never once per heartbeat.
"""

from __future__ import annotations

import msgspec

from harmony_fleet.contracts.heartbeat import Role
from harmony_fleet.contracts.ids import (
    DeviceIdField,
    InstanceIdField,
    LabelKey,
    LabelValue,
    NonNegFloat,
    NonNegInt,
    ShortText,
    UpgradeIdField,
    VersionField,
)
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, Progress

REGISTRY_SCHEMA_VERSION = 1


class InstanceSeen(msgspec.Struct, frozen=True, kw_only=True):
    """One agent process start seen for a device."""

    instance_id: InstanceIdField
    agent_version: VersionField
    role: Role
    first_seen: NonNegFloat
    last_seen: NonNegFloat
    last_seq: NonNegInt = 0


class UpgradeSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The registry's view of the device's latest upgrade."""

    upgrade_id: UpgradeIdField
    phase: AgentUpgradePhase
    target_version: VersionField
    message: str = ""
    """Plain text without clock times (a reason, or the error for older readers)."""
    updated_at: NonNegFloat = 0.0
    progress: Progress | None = None
    """Download progress while Staging, as the agent reported it."""
    error_code: str = ""
    error_detail: ShortText = ""
    watch_until: NonNegFloat | None = None
    """Unix time at which the post-commit watch window ends (phase Committed). Stored as a
    time, not as text: each reader renders it in its own time zone."""


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One device in the registry."""

    v: int = REGISTRY_SCHEMA_VERSION
    device_id: DeviceIdField
    current_version: VersionField
    online: bool
    first_seen: NonNegFloat
    last_seen: NonNegFloat
    heartbeat_interval_s: NonNegFloat = 5.0
    instances: list[InstanceSeen] = []
    """Most recent first, bounded (see core.presence.MAX_INSTANCES)."""
    labels: dict[LabelKey, LabelValue] = {}
    upgrade: UpgradeSummary | None = None
    updated_at: NonNegFloat = 0.0
    lease_epoch: NonNegInt = 0
    """The lease epoch of the operator that wrote it (ADR-023)."""
