"""The agent's local state file: a file format read across processes *and versions*.

``<state>/upgrade-state.json`` is written by one agent process and read by the next one on the
same device, which may run another version: the new main reads what the old agent wrote at its
commit, and after a post-commit rollback the *previous* version reads what the newer one wrote.
So it is a wire format like the others here: it carries ``v`` (a file written before ``v``
existed has none and decodes as version 1), unknown fields are ignored, its JSON Schema is
exported (``local_state``) and a golden fixture pins its encoding both ways.

The values are frozen dataclasses rather than structs because the upgrade machine replaces their
fields at every step, and ``dataclasses.replace`` is type-checked. What the file keeps, and why,
is told in ``core.upgrade.records`` (the pure rules that update it); ``adapters.device.state_store``
writes it atomically.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

from harmony_fleet.contracts.ids import (
    DeviceId,
    InstanceId,
    InstanceIdField,
    Sha256Field,
    UpgradeId,
    UpgradeIdField,
    Version,
    VersionField,
)
from harmony_fleet.contracts.upgrade import (
    AgentUpgradePhase,
    ErrorCode,
    Progress,
    UpgradeMarker,
    UpgradeStatus,
)

LOCAL_STATE_SCHEMA_VERSION = 1
#: Larger than a message: the record keeps a log tail, and the file is read from disk.
LOCAL_STATE_MAX_BYTES = 1024 * 1024
#: Longest text the status carries in one field (``ShortText``).
_TEXT_MAX = 4096


class UpgradeState(enum.StrEnum):
    """Where the agent-side machine is for the upgrade it is working on.

    Internal to the agent (the status shows phases: ``core.upgrade.states.PHASE_OF``), but
    persisted in the in-flight record, so a value, once written, is a format promise.
    """

    IDLE = "Idle"
    """No upgrade in hand (a fresh process, or the last one ended with nothing to do)."""
    STAGING = "Staging"
    """Layout self-heal, download and SHA-256 verification into the staging folder."""
    VERIFYING = "Verifying"
    """The new artifact's ``--self-test`` runs, bounded by a timer."""
    STARTING = "Starting"
    """Self-test passed; the candidate is being started beside the old agent."""
    CUTOVER_READY = "CutoverReady"
    """The candidate runs, the stop is armed; no candidate heartbeat seen yet."""
    HOLDING = "Holding"
    """The old agent sees candidate heartbeats but no stop has come: bounded by the hold timer."""
    COMMITTING = "Committing"
    """The matching stop came; ``current`` is being swapped to the target."""
    COMMITTED = "Committed"
    """``current`` points at the target; the old agent hands over (its only exit)."""
    WATCHING = "Watching"
    """The new main runs; the post-commit watch window is open (phase Committed). Its launcher,
    not this code, rolls it back if it crash-loops or goes silent; new markers wait."""
    SUCCEEDED = "Succeeded"
    """The watch window passed: the upgrade is final, the previous version is kept for a manual
    rollback and older ones are collected."""
    ROLLING_BACK = "RollingBack"
    """Stopping the candidate and restoring the previous layout."""
    ROLLED_BACK = "RolledBack"
    """The candidate was started and reverted; the previous version runs."""
    FAILED = "Failed"
    """Nothing outside staging changed (or the revert itself failed: the status says which)."""
    SUPERSEDED = "Superseded"
    """A newer marker replaced it before a candidate existed: aborted, staging cleaned up."""


@dataclass(frozen=True, kw_only=True)
class UpgradeInHand:
    """The upgrade an agent works on (or last worked on): one value wherever it goes.

    The machine's snapshot holds it, the in-flight record persists it with the state
    (:meth:`at`, :class:`InFlight`), a restart takes it back (:attr:`InFlight.hand`), and the
    status is described from it (:meth:`status`): a new fact about an upgrade is a field here.
    Times are the device's wall clock, for people to read: no deadline is computed from them.
    """

    marker: UpgradeMarker
    from_version: VersionField
    attempt: int = 1
    started_at: float = 0.0
    """When the agent took the marker in."""
    candidate_instance_id: InstanceIdField | None = None
    error_code: ErrorCode | None = None
    error_detail: str = ""
    candidate_exit_code: int | None = None
    candidate_log_tail: tuple[str, ...] = ()
    committed_at: float = 0.0
    """When the stop committed it (0 before): the start of the post-commit watch window."""
    superseded_by: UpgradeIdField | None = None
    """The newer upgrade that replaced this one (state Superseded)."""

    @property
    def upgrade_id(self) -> UpgradeId:
        return self.marker.upgrade_id

    @property
    def target(self) -> Version:
        return self.marker.target_version

    def at(self, state: UpgradeState) -> InFlight:
        """The record to persist for this upgrade in ``state``."""
        return InFlight(state=state, **{f.name: getattr(self, f.name) for f in fields(self)})

    def status(
        self,
        *,
        phase: AgentUpgradePhase,
        device_id: DeviceId,
        instance_id: InstanceId,
        updated_at: float,
        progress: Progress | None = None,
        pending_upgrade_id: UpgradeId | None = None,
        watch_until: float | None = None,
        previous_version: Version | None = None,
        previous_sha256: str | None = None,
    ) -> UpgradeStatus:
        """The wire status of this upgrade, as ``instance_id`` writes it at ``updated_at``."""
        return UpgradeStatus(
            upgrade_id=self.upgrade_id,
            device_id=device_id,
            phase=phase,
            from_version=self.from_version,
            to_version=self.target,
            instance_id=instance_id,
            attempt=self.attempt,
            progress=progress,
            error_code=self.error_code.value if self.error_code is not None else "",
            error_detail=self.error_detail[:_TEXT_MAX],
            candidate_instance_id=self.candidate_instance_id,
            candidate_exit_code=self.candidate_exit_code,
            candidate_log_tail=[line[:_TEXT_MAX] for line in self.candidate_log_tail],
            started_at=self.started_at,
            updated_at=updated_at,
            pending_upgrade_id=pending_upgrade_id,
            watch_until=watch_until,
            previous_version=previous_version,
            previous_sha256=previous_sha256,
            superseded_by=self.superseded_by,
        )


@dataclass(frozen=True, kw_only=True)
class InFlight(UpgradeInHand):
    """The latest upgrade on this device as last persisted (under way, or ended), and its state.

    The fields of :class:`UpgradeInHand` are flat beside ``state``, as they always were in the
    file, so that every version reads every other's record.
    """

    state: UpgradeState

    @property
    def hand(self) -> UpgradeInHand:
        """The upgrade in hand this record persists."""
        return UpgradeInHand(**{f.name: getattr(self, f.name) for f in fields(UpgradeInHand)})


@dataclass(frozen=True, kw_only=True)
class LocalState:
    """Everything in the agent's local state file (see ``core.upgrade.records``)."""

    v: int = LOCAL_STATE_SCHEMA_VERSION
    finished: tuple[UpgradeIdField, ...] = ()
    failed_versions: tuple[VersionField, ...] = ()
    in_flight: InFlight | None = None
    previous: VersionField | None = None
    installed: dict[VersionField, Sha256Field] = field(default_factory=dict)
    """version -> SHA-256 of ``versions/<version>/<artifact>``."""
    version_floor: VersionField | None = None
    """The highest version that passed its post-commit watch here (or ran as main outside one):
    an upgrade below it is refused unless the version is kept on disk (``core.upgrade.trust``)."""
