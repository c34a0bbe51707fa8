"""What the machine asks its driver to do, as frozen values returned by :func:`machine.step`.

The machine decides, the driver acts: each effect maps to one call on the executor, the status
sink, the local state store or the clock. Effects of one step are performed in
the order given; that order carries meaning (the status is written before the stop is
acknowledged, the upgrade is recorded as finished before the old agent hands over).
"""

from __future__ import annotations

from dataclasses import dataclass

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.local_state import InFlight, UpgradeInHand
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, ErrorCode, Progress, UpgradeMarker
from harmony_fleet.core.upgrade.events import MarkerSeen
from harmony_fleet.core.upgrade.states import TimerKind


@dataclass(frozen=True, kw_only=True)
class Stage:
    """Self-heal the layout, check free space, download and verify into the staging folder.

    Long-running: the driver runs it in the background and feeds ``StagingDone`` or
    ``StagingFailed`` (and ``StagingProgress`` on the way).
    """

    marker: UpgradeMarker


@dataclass(frozen=True, kw_only=True)
class RunSelfTest:
    """Run ``<target> --self-test`` with a timeout; feeds ``SelfTestPassed/Failed``."""

    marker: UpgradeMarker
    timeout_s: float


@dataclass(frozen=True, kw_only=True)
class CancelWork:
    """Cancel the background work in progress (staging or self-test), if any."""


@dataclass(frozen=True, kw_only=True)
class StartCandidate:
    """Start the new agent beside the old one; feeds ``CandidateStarted/StartFailed``."""

    marker: UpgradeMarker


@dataclass(frozen=True, kw_only=True)
class StopCandidate:
    """Stop the candidate of ``upgrade_id`` if it runs (idempotent)."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class ReplyToStop:
    """Answer one ``upgrade_stop`` command (``code`` OK means committed).

    The driver returns it from the dispatch that handled the stop: whether a stop is armed is
    the machine's own state (``Snapshot.armed_for``), nothing outside it mirrors that.
    """

    command_id: str
    code: ReplyCode
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code is ReplyCode.OK


@dataclass(frozen=True, kw_only=True)
class WatchPlan:
    """The post-commit watch the old agent arms before it swaps (see ``core.upgrade.watch``)."""

    upgrade_id: UpgradeId
    previous: Version
    target: Version
    committed_at: float
    window_s: float
    max_failures: int


@dataclass(frozen=True, kw_only=True)
class SwapCurrent:
    """Atomically point ``current`` at ``versions/<version>``; feeds ``CommitDone/Failed``.

    With ``watch``, the watch note is written durably *first*: if it cannot be, the swap does not
    happen (``CommitFailed``), because a commit without its safety net is not one we make. Written
    before the swap, it is there even if the power goes right after it.
    """

    upgrade_id: UpgradeId
    version: Version
    watch: WatchPlan | None = None


@dataclass(frozen=True, kw_only=True)
class Revert:
    """Stop the candidate, point ``current`` at ``previous``, remove the target's folder.

    Feeds ``RevertDone`` or ``RevertFailed``.
    """

    upgrade_id: UpgradeId
    previous: Version
    target: Version


@dataclass(frozen=True, kw_only=True)
class CleanupStaging:
    """Remove what staging left for ``version`` (the folder of a running version is kept)."""

    version: Version


@dataclass(frozen=True, kw_only=True)
class WriteStatus:
    """Write the device's ``UpgradeStatus`` for ``upgrade`` in ``phase``.

    The driver adds what only it knows: device, instance, the time, and the version kept to
    return to (``UpgradeInHand.status``).
    """

    upgrade: UpgradeInHand
    phase: AgentUpgradePhase
    progress: Progress | None = None
    pending_upgrade_id: UpgradeId | None = None
    watch_until: float | None = None

    @property
    def upgrade_id(self) -> UpgradeId:
        return self.upgrade.upgrade_id

    @property
    def error_code(self) -> ErrorCode | None:
        return self.upgrade.error_code


@dataclass(frozen=True, kw_only=True)
class EndWatch:
    """Remove the watch note and the rollback note of ``upgrade_id`` (idempotent; notes of
    another upgrade are left alone)."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class RecordInstalled:
    """Remember the verified SHA-256 of ``versions/<version>`` (a later rollback checks it)."""

    version: Version
    sha256: str


@dataclass(frozen=True, kw_only=True)
class RecordPrevious:
    """``version`` is now the one kept on disk to return to (``fleet rollback``)."""

    version: Version


@dataclass(frozen=True, kw_only=True)
class CollectGarbage:
    """Remove old versions, keeping ``protect`` (the running and the previous one), ``current``,
    any version an upgrade is working on, and the newest others up to the configured count."""

    protect: frozenset[Version]


@dataclass(frozen=True, kw_only=True)
class RaiseFloor:
    """``version`` passed its watch: the device's version floor rises to it (never falls;
    ``core.upgrade.trust``). A version rolled back inside its window does not raise it."""

    version: Version


@dataclass(frozen=True, kw_only=True)
class RememberFailedVersion:
    """Put ``version`` on this device's skip list."""

    version: Version


@dataclass(frozen=True, kw_only=True)
class RecordFinished:
    """Remember that ``upgrade_id`` reached an end here (replays are ignored from now on)."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class PersistInFlight:
    """Save the in-flight record (``None`` clears it)."""

    record: InFlight | None


@dataclass(frozen=True, kw_only=True)
class HandOver:
    """The old agent exits so that the service's main instance becomes the new version.

    This is the only way an agent ends itself during an upgrade.
    """

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class Resubmit:
    """Feed ``event`` (a marker that waited) once this step's effects are done.

    The machine never starts a second upgrade inside the step that ended the first: the new
    marker goes through the table again, from a state at rest.
    """

    event: MarkerSeen


@dataclass(frozen=True, kw_only=True)
class ScheduleTimer:
    """Arm (or re-arm) the timer of ``kind``; when it fires, feed its event."""

    kind: TimerKind
    delay_s: float
    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class CancelTimer:
    """Disarm the timer of ``kind`` (no-op if not armed)."""

    kind: TimerKind


Effect = (
    Stage
    | RunSelfTest
    | CancelWork
    | StartCandidate
    | StopCandidate
    | ReplyToStop
    | SwapCurrent
    | Revert
    | CleanupStaging
    | WriteStatus
    | EndWatch
    | RecordInstalled
    | RecordPrevious
    | CollectGarbage
    | RaiseFloor
    | RememberFailedVersion
    | RecordFinished
    | PersistInFlight
    | HandOver
    | Resubmit
    | ScheduleTimer
    | CancelTimer
)
