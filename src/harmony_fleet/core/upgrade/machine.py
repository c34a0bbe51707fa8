"""The agent-side upgrade state machine: a table, and :func:`step`.

Like h11, the protocol is data. :data:`TABLE` maps each state to the events it accepts, and for
each the handler to run and the states it may lead to. :func:`step` looks the pair up, runs the
handler and checks that the handler went where the table says, so the table, the code and the
generated diagram (:mod:`.diagram`) cannot drift apart. An event with no entry is a protocol
error naming the state and the event; the driver logs it and drops it.

The table also carries the rules a handler would otherwise repeat. A rule marked
``same_upgrade`` (the end of some work, a timer firing) only hears events naming the upgrade in
hand: :func:`step` drops one for another upgrade before the handler runs, so work that was
cancelled, or a timer that fired just as it was cancelled, can never move the current upgrade.
A decision with several outcomes (what a restarted process does, :mod:`.restart`) lists its
cases, each a target state with its condition in words, and the diagram draws them.

Events that can arrive late or twice (a timer that fired as it was cancelled, a heartbeat, a
redelivered marker, the end of work that was aborted) have an entry in every state, usually
:func:`~.outcomes.ignore`: duplicates are harmless by construction. An ``upgrade_stop`` always
has an entry, because it always deserves an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade import handlers as h
from harmony_fleet.core.upgrade import outcomes, restart
from harmony_fleet.core.upgrade.effects import Effect
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import UpgradeState
from harmony_fleet.errors import PermanentError

S = UpgradeState
Handler = Callable[[Snapshot, Any], outcomes.Result]


class ProtocolViolation(PermanentError):
    """An event arrived in a state that has no entry for it."""

    def __init__(self, state: UpgradeState, event: object) -> None:
        super().__init__(f"event {type(event).__name__} is not expected in state {state.value}")
        self.state = state
        self.event = event


class TableError(PermanentError):
    """A handler moved to a state its table entry does not declare (a bug in this package:
    retrying the same event fails the same way)."""


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One table entry: the handler and every state it may move to (besides staying)."""

    handler: Handler
    targets: frozenset[UpgradeState] = frozenset()
    same_upgrade: bool = False
    """Only for the upgrade in hand: an event naming another ``upgrade_id`` is dropped."""
    cases: tuple[tuple[UpgradeState, str], ...] = ()
    """For a decision table: each target with the condition that leads there, in order."""

    @property
    def ignores(self) -> bool:
        return self.handler is outcomes.ignore


def _r(handler: Handler, *targets: UpgradeState) -> Rule:
    return Rule(handler=handler, targets=frozenset(targets))


def _own(handler: Handler, *targets: UpgradeState) -> Rule:
    """A rule for events of the upgrade in hand only (work that ended, timers)."""
    return Rule(handler=handler, targets=frozenset(targets), same_upgrade=True)


#: What a fresh process does with the record it finds: one case per row of the restart table.
_RESTART = Rule(
    handler=restart.on_restarted,
    targets=frozenset(r.to for r in restart.RESTART_RULES),
    cases=tuple((r.to, r.when) for r in restart.RESTART_RULES),
)


IGNORE = _r(outcomes.ignore)

# Where a marker can lead once the machine is at rest: start, refuse, or succeed at once.
_FROM_REST = (S.STAGING, S.FAILED, S.IDLE)
# Where a failure before the candidate exists leads.
_ENDS = (S.FAILED,)
# Where a newer marker takes an upgrade whose candidate does not exist yet (it is resubmitted).
_SUPERSEDED = (S.SUPERSEDED,)

#: Entries every state shares: late heartbeats and timers are ignored, stops are answered.
_ALWAYS: dict[type[Any], Rule] = {
    ev.CandidateHeartbeatSeen: IGNORE,
    ev.StopReceived: _r(h.on_stop),
    ev.StagingTimedOut: IGNORE,
    ev.SelfTestTimedOut: IGNORE,
    ev.CutoverTimeout: IGNORE,
    ev.HoldTimeout: IGNORE,
    ev.WatchPassed: IGNORE,
    ev.CandidateExited: IGNORE,
    ev.StagingProgress: IGNORE,
}

#: Ends of work that may come late after an upgrade ended or was superseded.
_LATE_WORK: dict[type[Any], Rule] = {
    ev.StagingDone: IGNORE,
    ev.StagingFailed: IGNORE,
    ev.SelfTestPassed: IGNORE,
    ev.SelfTestFailed: IGNORE,
    ev.CandidateStarted: IGNORE,
    ev.CandidateStartFailed: IGNORE,
}

_CANDIDATE_DEFERS: dict[type[Any], Rule] = {ev.MarkerSeen: _r(h.on_marker)}

TABLE: Mapping[UpgradeState, Mapping[type[Any], Rule]] = MappingProxyType(
    {
        S.IDLE: {
            **_ALWAYS,
            ev.MarkerSeen: _r(h.on_marker, *_FROM_REST),
            ev.AgentRestarted: _RESTART,
        },
        S.STAGING: {
            **_ALWAYS,
            ev.MarkerSeen: _r(h.on_marker, *_SUPERSEDED),
            ev.StagingProgress: _own(h.on_staging_progress),
            ev.StagingDone: _own(h.on_staging_done, S.VERIFYING),
            ev.StagingFailed: _own(h.on_staging_failed, *_ENDS),
            ev.StagingTimedOut: _own(h.on_staging_timeout, *_ENDS),
        },
        S.VERIFYING: {
            **_ALWAYS,
            ev.MarkerSeen: _r(h.on_marker, *_SUPERSEDED),
            ev.StagingDone: IGNORE,
            ev.SelfTestPassed: _own(h.on_self_test_passed, S.STARTING),
            ev.SelfTestFailed: _own(h.on_self_test_failed, *_ENDS),
            ev.SelfTestTimedOut: _own(h.on_self_test_timeout, *_ENDS),
        },
        S.STARTING: {
            **_ALWAYS,
            **_CANDIDATE_DEFERS,
            ev.StagingDone: IGNORE,
            ev.SelfTestPassed: IGNORE,
            ev.CandidateHeartbeatSeen: _r(h.on_candidate_heartbeat),
            ev.CandidateStarted: _own(h.on_candidate_started, S.CUTOVER_READY, S.HOLDING),
            ev.CandidateStartFailed: _own(h.on_candidate_start_failed, S.ROLLING_BACK),
            ev.CandidateExited: _own(h.on_candidate_exited, S.ROLLING_BACK),
        },
        S.CUTOVER_READY: {
            **_ALWAYS,
            **_CANDIDATE_DEFERS,
            **_LATE_WORK,
            ev.CandidateHeartbeatSeen: _r(h.on_candidate_heartbeat, S.HOLDING),
            ev.StopReceived: _r(h.on_stop, S.COMMITTING),
            ev.CutoverTimeout: _own(h.on_cutover_timeout, S.ROLLING_BACK),
            ev.CandidateExited: _own(h.on_candidate_exited, S.ROLLING_BACK),
        },
        S.HOLDING: {
            **_ALWAYS,
            **_CANDIDATE_DEFERS,
            **_LATE_WORK,
            ev.CandidateHeartbeatSeen: _r(h.on_candidate_heartbeat),
            ev.StopReceived: _r(h.on_stop, S.COMMITTING),
            ev.HoldTimeout: _own(h.on_hold_timeout, S.ROLLING_BACK),
            ev.CandidateExited: _own(h.on_candidate_exited, S.ROLLING_BACK),
        },
        S.COMMITTING: {
            **_ALWAYS,
            **_CANDIDATE_DEFERS,
            **_LATE_WORK,
            ev.CandidateExited: _own(h.on_candidate_exited),
            ev.CommitDone: _own(h.on_commit_done, S.COMMITTED),
            ev.CommitFailed: _own(h.on_commit_failed, S.ROLLING_BACK),
        },
        S.COMMITTED: {
            **_ALWAYS,
            **_LATE_WORK,
            ev.MarkerSeen: _r(h.on_marker, *_FROM_REST),
            ev.CommitDone: IGNORE,
        },
        S.WATCHING: {
            **_ALWAYS,
            **_CANDIDATE_DEFERS,
            **_LATE_WORK,
            ev.CommitDone: IGNORE,
            ev.WatchPassed: _own(h.on_watch_passed, S.SUCCEEDED),
        },
        S.SUCCEEDED: {
            **_ALWAYS,
            **_LATE_WORK,
            ev.MarkerSeen: _r(h.on_marker, *_FROM_REST),
            ev.CommitDone: IGNORE,
        },
        S.ROLLING_BACK: {
            **_ALWAYS,
            **_CANDIDATE_DEFERS,
            **_LATE_WORK,
            ev.RevertDone: _own(h.on_revert_done, S.ROLLED_BACK),
            ev.RevertFailed: _own(h.on_revert_failed, S.FAILED),
        },
        S.ROLLED_BACK: {
            **_ALWAYS,
            **_LATE_WORK,
            ev.MarkerSeen: _r(h.on_marker, *_FROM_REST),
            ev.RevertDone: IGNORE,
        },
        S.FAILED: {
            **_ALWAYS,
            **_LATE_WORK,
            ev.MarkerSeen: _r(h.on_marker, *_FROM_REST),
            ev.RevertDone: IGNORE,
            ev.RevertFailed: IGNORE,
        },
        S.SUPERSEDED: {
            **_ALWAYS,
            **_LATE_WORK,
            ev.MarkerSeen: _r(h.on_marker, *_FROM_REST),
        },
    }
)


def rule_for(state: UpgradeState, event: object) -> Rule:
    """The table entry for ``event`` in ``state``; raise :class:`ProtocolViolation` if none."""
    rule = TABLE[state].get(type(event))
    if rule is None:
        raise ProtocolViolation(state, event)
    return rule


def step(snap: Snapshot, event: ev.Event) -> tuple[Snapshot, tuple[Effect, ...]]:
    """Feed one event: the next snapshot and the effects to perform, in order.

    Pure: the same snapshot and event always give the same answer, and ``snap`` is unchanged.
    """
    rule = rule_for(snap.state, event)
    if rule.same_upgrade and not snap.belongs(getattr(event, "upgrade_id", None)):
        return snap, outcomes.NO_EFFECTS
    new, effects = rule.handler(snap, event)
    if new.state is not snap.state and new.state not in rule.targets:
        raise TableError(
            f"{type(event).__name__} in {snap.state.value} moved to {new.state.value}, "
            f"which the table does not declare"
        )
    return new, effects
