"""The agent's upgrade states, the timers they arm, and the error codes they report.

The agent needs a few more states than the wire has phases (``Starting``, ``Committing``,
``RollingBack`` are short internal steps; ``Watching`` is the new main's probation after the
commit, reported as ``Committed`` with the window's end), so states and
:class:`AgentUpgradePhase` are kept apart and :data:`PHASE_OF` maps one onto the other: the
status a person reads always uses the phase vocabulary of the contracts.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

from harmony_fleet.contracts.local_state import UpgradeState
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, ErrorCode

__all__ = [
    "ARMED_STATES",
    "AT_REST",
    "BLAMES_VERSION",
    "CANDIDATE_STATES",
    "COMMITTED_STATES",
    "MAX_ATTEMPTS",
    "MAX_FINISHED",
    "PHASE_OF",
    "SELF_TEST_GRACE_S",
    "TERMINAL_STATES",
    "WATCH_SETTLE_S",
    "ErrorCode",
    "TimerKind",
    "UpgradeState",
]


#: The phase written to the status while in each state.
PHASE_OF: MappingProxyType[UpgradeState, AgentUpgradePhase] = MappingProxyType(
    {
        UpgradeState.IDLE: AgentUpgradePhase.REQUESTED,
        UpgradeState.STAGING: AgentUpgradePhase.STAGING,
        UpgradeState.VERIFYING: AgentUpgradePhase.VERIFYING,
        UpgradeState.STARTING: AgentUpgradePhase.VERIFYING,
        UpgradeState.CUTOVER_READY: AgentUpgradePhase.CUTOVER_READY,
        UpgradeState.HOLDING: AgentUpgradePhase.HOLDING,
        UpgradeState.COMMITTING: AgentUpgradePhase.CUTOVER_READY,
        UpgradeState.COMMITTED: AgentUpgradePhase.COMMITTED,
        UpgradeState.WATCHING: AgentUpgradePhase.COMMITTED,
        UpgradeState.SUCCEEDED: AgentUpgradePhase.SUCCEEDED,
        UpgradeState.ROLLING_BACK: AgentUpgradePhase.CUTOVER_READY,
        UpgradeState.ROLLED_BACK: AgentUpgradePhase.ROLLED_BACK,
        UpgradeState.FAILED: AgentUpgradePhase.FAILED,
        UpgradeState.SUPERSEDED: AgentUpgradePhase.SUPERSEDED,
    }
)

#: States in which the old agent is armed for the stop of its upgrade.
ARMED_STATES = frozenset({UpgradeState.CUTOVER_READY, UpgradeState.HOLDING})

#: States in which a candidate process may exist (a restart in one of these must stop it).
CANDIDATE_STATES = frozenset(
    {
        UpgradeState.STARTING,
        UpgradeState.CUTOVER_READY,
        UpgradeState.HOLDING,
        UpgradeState.COMMITTING,
        UpgradeState.ROLLING_BACK,
    }
)

#: States in which no work is under way: a new marker may start from here.
AT_REST = frozenset(
    {
        UpgradeState.IDLE,
        UpgradeState.FAILED,
        UpgradeState.ROLLED_BACK,
        UpgradeState.COMMITTED,
        UpgradeState.SUCCEEDED,
        UpgradeState.SUPERSEDED,
    }
)

#: States that end an upgrade *for this process*: nothing more happens for its ``upgrade_id``
#: here (after Committed the old agent exits; the new main goes on from the record).
TERMINAL_STATES = frozenset(
    {
        UpgradeState.FAILED,
        UpgradeState.ROLLED_BACK,
        UpgradeState.COMMITTED,
        UpgradeState.SUCCEEDED,
        UpgradeState.SUPERSEDED,
    }
)

#: Records of these states name an upgrade whose swap may have happened (the restart rules and
#: the post-commit rollback note look at where ``current`` points).
COMMITTED_STATES = frozenset(
    {UpgradeState.COMMITTING, UpgradeState.COMMITTED, UpgradeState.WATCHING}
)


class TimerKind(enum.StrEnum):
    """The deadlines the machine arms; each firing becomes one event."""

    STAGING = "staging"
    SELF_TEST = "self_test"
    CUTOVER = "cutover"
    HOLD = "hold"
    WATCH = "watch"


#: Extra time the machine's own self-test timer allows beyond the executor's timeout, so that a
#: hung executor is caught without racing a well-behaved one.
SELF_TEST_GRACE_S = 5.0

#: Extra time the new main waits beyond the end of the watch window before it says Succeeded,
#: so that a launcher that caught a failure in the window's last moments finishes its rollback
#: first (the launcher polls liveness every 0.5 s; a rollback takes a stop and a swap).
WATCH_SETTLE_S = 2.0

#: How many times a restarted agent resumes an upgrade interrupted before the candidate started.
MAX_ATTEMPTS = 3

#: How many finished upgrade ids the agent remembers (replays of older ones are very unlikely:
#: the marker key holds only the latest marker).
MAX_FINISHED = 64


#: Failures that prove the version itself is bad on this device: it goes on the skip list (a
#: post-commit rollback too: the new main crash-looped or went silent while it was the main).
#: Download and checksum errors (a wrong URL or hash in the marker is not the release's fault),
#: timeouts waiting for the operator, restarts and infrastructure errors do not: a NATS outage
#: must never blacklist a good release (a self-test that failed while NATS was away is
#: ``self_test_inconclusive``, not ``self_test_failed``).
BLAMES_VERSION = frozenset(
    {
        ErrorCode.SELF_TEST_FAILED,
        ErrorCode.SELF_TEST_TIMEOUT,
        ErrorCode.CANDIDATE_EXITED,
        ErrorCode.POST_COMMIT,
    }
)
