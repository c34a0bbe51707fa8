"""Everything that can happen to an upgrade, as frozen values fed to :func:`machine.step`.

Events that report the end of some work (staging, self-test, candidate start, commit, revert)
and timer firings carry the ``upgrade_id`` they belong to: the machine drops one that belongs to
another upgrade, so work that was cancelled, or a timer that fired just as it was cancelled, can
never move the current upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass

from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.local_state import InFlight
from harmony_fleet.contracts.upgrade import ErrorCode, Progress, UpgradeMarker
from harmony_fleet.core.upgrade.states import TimerKind
from harmony_fleet.core.upgrade.watch import RollbackNote


@dataclass(frozen=True, kw_only=True)
class MarkerSeen:
    """The agent read its device's marker (first sight, redelivery or a newer one)."""

    marker: UpgradeMarker
    seen_at: float


@dataclass(frozen=True, kw_only=True)
class StagingProgress:
    """Bytes arrived; only the status changes."""

    upgrade_id: UpgradeId
    progress: Progress


@dataclass(frozen=True, kw_only=True)
class StagingDone:
    """The artifact is in ``versions/<target>/`` with the right SHA-256."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class StagingFailed:
    """Self-heal, preflight, download or verification failed; nothing else changed."""

    upgrade_id: UpgradeId
    code: ErrorCode
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class SelfTestPassed:
    """``<new> --self-test`` exited 0 in time."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class SelfTestFailed:
    """``<new> --self-test`` exited non-zero (or could not run).

    ``control_plane_lost``: this agent could not reach NATS at some point while the self-test
    ran (a status write failed, or its connection was down), so a failure may be the outage's.
    """

    upgrade_id: UpgradeId
    detail: str = ""
    exit_code: int | None = None
    log_tail: tuple[str, ...] = ()
    control_plane_lost: bool = False


@dataclass(frozen=True, kw_only=True)
class CandidateStarted:
    """The new agent runs beside the old one (transient unit or detached process)."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class CandidateStartFailed:
    """The candidate could not be started."""

    upgrade_id: UpgradeId
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class CandidateHeartbeatSeen:
    """The old agent saw a heartbeat of its own device from another instance."""

    instance_id: InstanceId
    version: Version
    upgrade_id: UpgradeId | None = None


@dataclass(frozen=True, kw_only=True)
class CandidateExited:
    """The candidate process ended (crash, self-exit, or our own stop)."""

    upgrade_id: UpgradeId
    exit_code: int | None
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StopReceived:
    """An ``upgrade_stop`` command arrived on the device's command subject.

    ``received_at`` (wall time) becomes the commit time shown when the stop commits
    (``watch_until``); how much of the window is left is measured on the monotonic clock, never
    from it (``AgentRestarted.since_commit_s``).
    """

    upgrade_id: UpgradeId
    command_id: str
    received_at: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StagingTimedOut:
    """The staging deadline (``timeouts.download_s``) passed."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class SelfTestTimedOut:
    """The self-test did not finish within ``timeouts.self_test_s`` (plus a grace).

    ``control_plane_lost`` as for :class:`SelfTestFailed` (a self-test waiting for NATS hangs).
    """

    upgrade_id: UpgradeId
    control_plane_lost: bool = False


@dataclass(frozen=True, kw_only=True)
class CutoverTimeout:
    """No stop and no candidate heartbeat within ``timeouts.cutover_s``."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class HoldTimeout:
    """Candidate heartbeats were seen, but no stop came within ``timeouts.hold_s``."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class WatchPassed:
    """The post-commit watch window (plus a settling grace) passed with the new main alive."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class CommitDone:
    """``current`` now points at the target (the swap is durable)."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class CommitFailed:
    """The swap failed; ``current`` is unchanged (the swap is atomic)."""

    upgrade_id: UpgradeId
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class RevertDone:
    """The candidate is stopped and the previous layout is back."""

    upgrade_id: UpgradeId


@dataclass(frozen=True, kw_only=True)
class RevertFailed:
    """The revert itself failed: the device needs a person; the status says so."""

    upgrade_id: UpgradeId
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentRestarted:
    """A fresh agent process starts and finds what the last one left.

    ``record`` is the persisted in-flight upgrade (None if there was none), ``current_version``
    what the on-disk ``current`` symlink points at (after self-heal), ``post_commit`` the note a
    launcher left after it returned the device to the previous version inside a watch window,
    and ``since_commit_s`` how long ago the commit was, on a clock that does not step
    (``WatchNote.elapsed``; None: unknown, the whole window is watched again).
    """

    record: InFlight | None
    current_version: Version | None
    post_commit: RollbackNote | None = None
    since_commit_s: float | None = None


Event = (
    MarkerSeen
    | StagingProgress
    | StagingDone
    | StagingFailed
    | SelfTestPassed
    | SelfTestFailed
    | CandidateStarted
    | CandidateStartFailed
    | CandidateHeartbeatSeen
    | CandidateExited
    | StopReceived
    | StagingTimedOut
    | SelfTestTimedOut
    | CutoverTimeout
    | HoldTimeout
    | WatchPassed
    | CommitDone
    | CommitFailed
    | RevertDone
    | RevertFailed
    | AgentRestarted
)

#: Every event type, in a stable order (documentation and tests iterate over it).
EVENT_TYPES: tuple[type[Event], ...] = (
    MarkerSeen,
    StagingProgress,
    StagingDone,
    StagingFailed,
    SelfTestPassed,
    SelfTestFailed,
    CandidateStarted,
    CandidateStartFailed,
    CandidateHeartbeatSeen,
    CandidateExited,
    StopReceived,
    StagingTimedOut,
    SelfTestTimedOut,
    CutoverTimeout,
    HoldTimeout,
    WatchPassed,
    CommitDone,
    CommitFailed,
    RevertDone,
    RevertFailed,
    AgentRestarted,
)

_TIMER_EVENTS: dict[
    TimerKind,
    type[StagingTimedOut | SelfTestTimedOut | CutoverTimeout | HoldTimeout | WatchPassed],
] = {
    TimerKind.STAGING: StagingTimedOut,
    TimerKind.SELF_TEST: SelfTestTimedOut,
    TimerKind.CUTOVER: CutoverTimeout,
    TimerKind.HOLD: HoldTimeout,
    TimerKind.WATCH: WatchPassed,
}


def timer_event(kind: TimerKind, upgrade_id: UpgradeId) -> Event:
    """The event a timer of ``kind`` armed for ``upgrade_id`` produces when it fires."""
    return _TIMER_EVENTS[kind](upgrade_id=upgrade_id)
