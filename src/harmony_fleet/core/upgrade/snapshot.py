"""The agent-side machine's whole state: one frozen value, replaced by every step.

Keeping every fact the machine decides on in one immutable :class:`Snapshot` is what makes
:func:`machine.step` a pure function, and what lets a property test compare the state before and
after any event. The facts about the upgrade itself are one value, :class:`UpgradeInHand`, the
same one the local state file persists and the status is described from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.local_state import InFlight, UpgradeInHand
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, Progress, UpgradeMarker
from harmony_fleet.core.upgrade.effects import WriteStatus
from harmony_fleet.core.upgrade.events import MarkerSeen
from harmony_fleet.core.upgrade.records import Memory
from harmony_fleet.core.upgrade.states import ARMED_STATES, PHASE_OF, UpgradeState


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Everything the machine knows. Build the first one with :meth:`initial`."""

    state: UpgradeState = UpgradeState.IDLE
    running_version: Version
    """The version of this agent process (never changes during its life)."""
    instance_id: InstanceId
    """This process's instance id: its own heartbeats never count as the candidate's."""
    memory: Memory = field(default_factory=Memory)
    hand: UpgradeInHand | None = None
    """The upgrade in hand (also kept once it ended, to recognise duplicates)."""
    progress: Progress | None = None
    """The download's progress while staging (shown in the status, never persisted)."""
    pending: MarkerSeen | None = None
    """A newer marker waiting for the current upgrade to end (see acceptance)."""
    stop_commands: tuple[str, ...] = ()
    """Command ids of matching stops awaiting the outcome of the commit."""
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
    def upgrade(self) -> UpgradeInHand:
        """The upgrade in hand, in the states that have one (every state but a fresh Idle)."""
        assert self.hand is not None, f"no upgrade in hand in {self.state.value}"
        return self.hand

    @property
    def marker(self) -> UpgradeMarker | None:
        return self.hand.marker if self.hand is not None else None

    @property
    def upgrade_id(self) -> UpgradeId | None:
        return self.hand.upgrade_id if self.hand is not None else None

    @property
    def target(self) -> Version | None:
        return self.hand.target if self.hand is not None else None

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
        if self.hand is None or not self.watched:
            return 0.0
        return self.hand.marker.timeouts.watch_s

    @property
    def watch_until(self) -> float | None:
        """When the watch window of the committed upgrade in hand ends, for people to read
        (the device's wall clock; the machine's own deadline is a timer)."""
        window = self.watch_window_s
        if self.hand is None or self.hand.committed_at <= 0 or window <= 0:
            return None
        return self.hand.committed_at + window

    def belongs(self, upgrade_id: UpgradeId | None) -> bool:
        """Is ``upgrade_id`` the upgrade in hand?"""
        return self.hand is not None and upgrade_id == self.hand.upgrade_id

    def moved(self, state: UpgradeState, hand: UpgradeInHand | None = None) -> Snapshot:
        """A copy in ``state``, with ``hand`` (the upgrade in hand, changed) if given.

        Other fields change with ``dataclasses.replace``, which mypy checks field by field.
        """
        return replace(self, state=state, hand=hand if hand is not None else self.hand)

    def record(self, state: UpgradeState | None = None) -> InFlight:
        """The in-flight record to persist for this snapshot (requires an upgrade in hand)."""
        return self.upgrade.at(state or self.state)

    def status(self, phase: AgentUpgradePhase | None = None) -> WriteStatus:
        """The status effect describing this snapshot (``phase`` overrides the state's)."""
        pending = self.pending.marker.upgrade_id if self.pending is not None else None
        return WriteStatus(
            upgrade=self.upgrade,
            phase=phase or self.phase,
            progress=self.progress,
            pending_upgrade_id=pending,
            watch_until=self.watch_until,
        )
