"""Upgrade marker and upgrade status: the two KV values of the self-upgrade protocol (ADR-022).

One writer per key: the operator writes a device's **marker** (what to install), the agent writes
its **status** (how it is going). Both carry the ``upgrade_id``, which is how replays are
recognised: an agent never runs an ``upgrade_id`` it has already finished.
"""

from __future__ import annotations

import enum

import msgspec

from harmony_fleet.contracts.ids import (
    DeviceIdField,
    InstanceIdField,
    NonNegFloat,
    NonNegInt,
    Sha256Field,
    ShortText,
    UpgradeIdField,
    VersionField,
)

UPGRADE_SCHEMA_VERSION = 1


class AgentUpgradePhase(enum.StrEnum):
    """Where one upgrade of one device stands. See docs/adr/022-agent-self-upgrade.md."""

    REQUESTED = "Requested"
    """The operator wrote the marker; no agent has picked it up yet."""
    STAGING = "Staging"
    """Preflight, layout self-heal, download and SHA-256 verification into versions/<target>/."""
    VERIFYING = "Verifying"
    """Running the new artifact's ``--self-test`` with a timeout."""
    CUTOVER_READY = "CutoverReady"
    """The candidate runs beside the old agent; the old agent is armed for the stop."""
    HOLDING = "Holding"
    """The old agent sees the candidate's heartbeats but no stop has come: bounded wait."""
    COMMITTED = "Committed"
    """The stop came; ``current`` points at the target; the old agent has handed over."""
    SUCCEEDED = "Succeeded"
    """The operator has seen the new version running as the device's main instance."""
    ROLLED_BACK = "RolledBack"
    """The candidate was started and then reverted; the previous version runs."""
    FAILED = "Failed"
    """Staging or verification failed, or the marker was refused: nothing outside staging
    changed."""

    @property
    def terminal(self) -> bool:
        """No further transition will happen for this ``upgrade_id``."""
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset(
    {AgentUpgradePhase.SUCCEEDED, AgentUpgradePhase.ROLLED_BACK, AgentUpgradePhase.FAILED}
)


class UpgradeTimeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on each phase, chosen by whoever requested the upgrade."""

    download_s: NonNegFloat = 2 * 3600.0
    """Overall deadline for the download, retries included (slow links are normal)."""
    self_test_s: NonNegFloat = 60.0
    cutover_s: NonNegFloat = 120.0
    """How long the old agent waits for the stop when it sees no candidate heartbeat."""
    hold_s: NonNegFloat = 600.0
    """How long it waits for the stop while it does see candidate heartbeats (partition)."""


class UpgradeMarker(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator wants a device to run. KV bucket ``fleet_upgrade_marker``, key = device."""

    v: int = UPGRADE_SCHEMA_VERSION
    upgrade_id: UpgradeIdField
    device_id: DeviceIdField
    target_version: VersionField
    artifact_url: ShortText
    sha256: Sha256Field
    size: NonNegInt | None = None
    requested_at: NonNegFloat
    requested_by: ShortText = ""
    force: bool = False
    """Install even if this version failed on this device before."""
    timeouts: UpgradeTimeouts = UpgradeTimeouts()


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """Download progress, as reported in the status while Staging."""

    bytes_done: NonNegInt = 0
    bytes_total: NonNegInt | None = None
    rate_bps: NonNegFloat = 0.0
    retries: NonNegInt = 0


class UpgradeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How one upgrade is going. KV bucket ``fleet_upgrade_status``, key = device; agent writes."""

    v: int = UPGRADE_SCHEMA_VERSION
    upgrade_id: UpgradeIdField
    device_id: DeviceIdField
    phase: AgentUpgradePhase
    from_version: VersionField
    to_version: VersionField
    instance_id: InstanceIdField
    """The agent instance that wrote this status."""
    attempt: NonNegInt = 1
    progress: Progress | None = None
    error_code: str = ""
    error_detail: ShortText = ""
    candidate_instance_id: InstanceIdField | None = None
    candidate_exit_code: int | None = None
    candidate_log_tail: list[ShortText] = []
    started_at: NonNegFloat
    updated_at: NonNegFloat
    pending_upgrade_id: UpgradeIdField | None = None
    """A newer marker the agent has seen but not started: it starts only once this upgrade is
    terminal (ADR-022, "markers in flight")."""
