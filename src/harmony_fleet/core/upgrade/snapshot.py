"""The agent-side machine's whole state: one frozen value, replaced by every step.

Keeping every fact the machine decides on in one immutable :class:`Snapshot` is what makes
:func:`machine.step` a pure function, and what lets a property test compare the state before and
after any event.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, Progress, UpgradeMarker
from harmony_fleet.core.upgrade.effects import WriteStatus
from harmony_fleet.core.upgrade.events import MarkerSeen
from harmony_fleet.core.upgrade.records import InFlight, Memory
from harmony_fleet.core.upgrade.states import (
    ARMED_STATES,
    PHASE_OF,
    ErrorCode,
    UpgradeState,
)


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything the machine knows. Build the first one with :meth:`initial`."""

    state: UpgradeState = UpgradeState.IDLE
    running_version: Version
    """The version of this agent process (never changes during its life)."""
    instance_id: InstanceId
    """This process's instance id: its own heartbeats never count as the candidate's."""
    memory: Memory = field(default_factory=Memory)
    marker: UpgradeMarker | None = None
    """The upgrade in hand (also kept once it ended, to recognise duplicates)."""
    from_version: Version | None = None
    attempt: int = 1
    started_at: float = 0.0
    progress: Progress | None = None
    candidate_instance_id: InstanceId | None = None
    error_code: ErrorCode | None = None
    error_detail: str = ""
    candidate_exit_code: int | None = None
    candidate_log_tail: tuple[str, ...] = ()
    pending: MarkerSeen | None = None
    """A newer marker waiting for the current upgrade to end (see acceptance)."""
    stop_commands: tuple[str, ...] = ()
    """Command ids of matching stops awaiting the outcome of the commit."""
    committed_at: float = 0.0
    """Wall time of the commit of the upgrade in hand (0 before it)."""
    watched: bool = True
    """Does a launcher act on the post-commit watch note on this device? Without one, holding
    the status at Committed for a window would promise a protection nobody gives: the new main
    then says Succeeded as soon as it runs."""

    @classmethod
    def initial(
        cls,
        *,
        running_version: Version,
        instance_id: InstanceId,
        memory: Memory | None = None,
        watched: bool = True,
    ) -> Snapshot:
        """A fresh agent process: Idle, with what the local state file remembers."""
        return cls(
            running_version=running_version,
            instance_id=instance_id,
            memory=memory if memory is not None else Memory(),
            watched=watched,
        )

    @property
    def upgrade_id(self) -> UpgradeId | None:
        return self.marker.upgrade_id if self.marker is not None else None

    @property
    def target(self) -> Version | None:
        return self.marker.target_version if self.marker is not None else None

    @property
    def armed_for(self) -> UpgradeId | None:
        """The upgrade id a stop must name to commit, or None when unarmed."""
        return self.upgrade_id if self.state in ARMED_STATES else None

    @property
    def phase(self) -> AgentUpgradePhase:
        return PHASE_OF[self.state]

    @property
    def watch_window_s(self) -> float:
        """The post-commit watch window of the upgrade in hand on this device (0: none)."""
        if self.marker is None or not self.watched:
            return 0.0
        return self.marker.timeouts.watch_s

    @property
    def watch_until(self) -> float | None:
        """When the watch window of the committed upgrade in hand ends, if it has one."""
        window = self.watch_window_s
        if self.committed_at <= 0 or window <= 0:
            return None
        return self.committed_at + window

    def belongs(self, upgrade_id: UpgradeId | None) -> bool:
        """Is ``upgrade_id`` the upgrade in hand?"""
        return self.marker is not None and upgrade_id == self.marker.upgrade_id

    def moved(self, state: UpgradeState, **changes: object) -> Snapshot:
        """A copy in ``state`` with ``changes`` applied."""
        return replace(self, state=state, **changes)  # type: ignore[arg-type]

    def record(self, state: UpgradeState | None = None) -> InFlight:
        """The in-flight record to persist for this snapshot (requires a marker)."""
        assert self.marker is not None and self.from_version is not None
        return InFlight(
            marker=self.marker,
            from_version=self.from_version,
            state=state or self.state,
            attempt=self.attempt,
            started_at=self.started_at,
            candidate_instance_id=self.candidate_instance_id,
            error_code=self.error_code,
            error_detail=self.error_detail,
            candidate_exit_code=self.candidate_exit_code,
            candidate_log_tail=self.candidate_log_tail,
            committed_at=self.committed_at,
        )

    def status(self, phase: AgentUpgradePhase | None = None) -> WriteStatus:
        """The status effect describing this snapshot (``phase`` overrides the state's)."""
        assert self.marker is not None and self.from_version is not None
        return WriteStatus(
            upgrade_id=self.marker.upgrade_id,
            phase=phase or self.phase,
            from_version=self.from_version,
            to_version=self.marker.target_version,
            started_at=self.started_at,
            attempt=self.attempt,
            progress=self.progress,
            error_code=self.error_code,
            error_detail=self.error_detail,
            candidate_instance_id=self.candidate_instance_id,
            candidate_exit_code=self.candidate_exit_code,
            candidate_log_tail=self.candidate_log_tail,
            pending_upgrade_id=(
                self.pending.marker.upgrade_id if self.pending is not None else None
            ),
            watch_until=self.watch_until,
        )
