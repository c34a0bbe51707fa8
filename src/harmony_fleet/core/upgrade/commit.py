"""The operator's side of the commit: when to send ``upgrade_stop``, and what to show after it.

Single commit authority (ADR-022, invariant 1) rests on this module. The operator sends the
stop only after it has **itself** observed, after the marker was written, a heartbeat from the
device carrying the target version and an ``instance_id`` it had not seen before the marker.
The old agent's own heartbeats never count (even if a bug made it report the target version),
and nothing received before the marker counts (a stale heartbeat from an earlier attempt, or from
before an operator restart, proves nothing about this upgrade).

Usage, per device with a marker in flight::

    view = CommitView(marker=m, marker_seen_at=t0, old_instance_id=old,
                      instances_before_marker=known, status=s, heartbeats=hbs, stop=ledger)
    d = decide(view, now)
    if d.kind is DecisionKind.SEND_STOP: send, then ledger = ledger.sent_at(now)
    on a reply:                          ledger = ledger.replied(reply.code)

After an operator restart, ``marker_seen_at`` is the moment the restarted operator read the
marker, on its own clock, and ``instances_before_marker`` is rebuilt from the registry (every
``InstanceSeen`` first seen before that): :func:`instances_before` does it. No decision compares
the operator's clock with another machine's (``marker.requested_at`` is the requester's clock,
shown, never compared). A candidate's heartbeat carries its ``upgrade_id``, a fresh random id per
marker: an instance that says it is the candidate *of this upgrade* cannot have run before the
marker, so it counts even when the restarted operator's registry knew it from before the restart.

After the commit the operator does **not** declare success. Seeing the new version heartbeat as
the device's main instance proves it started, not that it stays up: the device watches it for
``timeouts.watch_s`` and may still return to the previous version by itself. So the decision is
:attr:`DecisionKind.WATCHING` ("committed, watching") until the agent writes ``Succeeded`` (the
window passed) or ``RolledBack`` (``post_commit``), and either one, whenever it comes, is the
last word (:attr:`DecisionKind.FINISHED`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.heartbeat import Heartbeat, Role
from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.registry import InstanceSeen
from harmony_fleet.contracts.upgrade import (
    TERMINAL_PHASES,
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
)

#: How often an unacknowledged stop is sent again while a candidate is heartbeating.
STOP_RETRY_S = 2.0


@dataclass(frozen=True, kw_only=True)
class ObservedHeartbeat:
    """One heartbeat as the operator received it; ``received_at`` is the operator's clock."""

    instance_id: InstanceId
    agent_version: Version
    role: Role
    received_at: float
    upgrade_id: UpgradeId | None = None

    @classmethod
    def of(cls, hb: Heartbeat, *, received_at: float) -> ObservedHeartbeat:
        return cls(
            instance_id=hb.instance_id,
            agent_version=hb.agent_version,
            role=hb.role,
            received_at=received_at,
            upgrade_id=hb.upgrade_id,
        )


@dataclass(frozen=True, kw_only=True)
class StopLedger:
    """What the operator did with the stop so far (kept per upgrade_id)."""

    sent: int = 0
    last_sent_at: float | None = None
    acknowledged: bool = False
    last_code: ReplyCode | None = None

    def sent_at(self, now: float) -> StopLedger:
        return replace(self, sent=self.sent + 1, last_sent_at=now)

    def replied(self, code: ReplyCode) -> StopLedger:
        """Record a reply; only ``ok`` acknowledges (a refusal is retried until terminal)."""
        return replace(self, acknowledged=self.acknowledged or code is ReplyCode.OK, last_code=code)


@dataclass(frozen=True, kw_only=True)
class CommitView:
    """Everything the operator knows about one device's upgrade."""

    marker: UpgradeMarker
    marker_seen_at: float
    """Operator time when the marker was first seen (by this operator process)."""
    old_instance_id: InstanceId | None
    """The device's main instance when the marker was written."""
    instances_before_marker: frozenset[InstanceId] = frozenset()
    status: UpgradeStatus | None = None
    """The device's latest status; one for another ``upgrade_id`` is disregarded."""
    status_seen_at: float | None = None
    heartbeats: tuple[ObservedHeartbeat, ...] = ()
    stop: StopLedger = StopLedger()

    @property
    def target(self) -> Version:
        return self.marker.target_version

    @property
    def own_status(self) -> UpgradeStatus | None:
        if self.status is None or self.status.upgrade_id != self.marker.upgrade_id:
            return None
        return self.status


class DecisionKind(enum.StrEnum):
    WAIT = "wait"
    """Nothing to send now (``retry_at`` says when a stop may be due)."""
    SEND_STOP = "send_stop"
    """Send ``upgrade_stop(upgrade_id)`` to the device now."""
    WATCHING = "watching"
    """Committed, and the operator saw the new version as the device's main instance; the
    device's post-commit watch decides the end (keep reflecting Committed until it does)."""
    FINISHED = "finished"
    """The agent ended the upgrade (``phase`` says how): stop caring about this marker."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    kind: DecisionKind
    reason: str
    candidate_instance_id: InstanceId | None = None
    retry_at: float | None = None
    phase: AgentUpgradePhase | None = None
    watch_until: float | None = None


def instances_before(
    instances: Iterable[InstanceSeen], marker_seen_at: float
) -> frozenset[InstanceId]:
    """Instance ids first seen before the marker (from the registry, after a restart)."""
    return frozenset(i.instance_id for i in instances if i.first_seen < marker_seen_at)


def _is_new(view: CommitView, hb: ObservedHeartbeat) -> bool:
    if hb.instance_id == view.old_instance_id or hb.agent_version != view.target:
        return False
    if hb.upgrade_id is not None:
        # The candidate of this very upgrade (ids, not clocks: see the module docstring).
        return hb.upgrade_id == view.marker.upgrade_id
    return hb.received_at > view.marker_seen_at and hb.instance_id not in (
        view.instances_before_marker
    )


def counts_as_candidate(view: CommitView, hb: ObservedHeartbeat) -> bool:
    """Does ``hb`` prove the target version runs in a new instance of this device?"""
    return _is_new(view, hb)


def counts_as_new_main(view: CommitView, hb: ObservedHeartbeat) -> bool:
    """Is ``hb`` the new version running as the device's main instance (after the commit)?"""
    after = view.status_seen_at if view.own_status is not None else None
    return _is_new(view, hb) and hb.role is Role.MAIN and (after is None or hb.received_at >= after)


def decide(view: CommitView, now: float, *, retry_s: float = STOP_RETRY_S) -> Decision:
    """What the operator should do about this upgrade at ``now``."""
    status = view.own_status
    if status is not None and status.phase in TERMINAL_PHASES:
        return Decision(
            kind=DecisionKind.FINISHED,
            reason=f"agent reported {status.phase.value} {status.error_code}".strip(),
            phase=status.phase,
        )
    committed = (status is not None and status.phase is AgentUpgradePhase.COMMITTED) or (
        view.stop.acknowledged
    )
    if committed:
        until = status.watch_until if status is not None else None
        for hb in view.heartbeats:
            if counts_as_new_main(view, hb):
                return Decision(
                    kind=DecisionKind.WATCHING,
                    reason=f"{view.target} runs as main instance {hb.instance_id}"
                    + ("; the device watches it until the window ends" if until else ""),
                    candidate_instance_id=hb.instance_id,
                    phase=AgentUpgradePhase.COMMITTED,
                    watch_until=until,
                )
        if status is not None and status.phase is AgentUpgradePhase.COMMITTED:
            return Decision(kind=DecisionKind.WAIT, reason="committed; waiting for the new main")
    candidate = next((hb for hb in view.heartbeats if counts_as_candidate(view, hb)), None)
    if candidate is None:
        return Decision(
            kind=DecisionKind.WAIT,
            reason=f"no heartbeat of {view.target} from a new instance since the marker",
        )
    if view.stop.acknowledged:
        return Decision(
            kind=DecisionKind.WAIT,
            reason="stop acknowledged; waiting for the committed status",
            candidate_instance_id=candidate.instance_id,
        )
    last = view.stop.last_sent_at
    if last is None or now >= last + retry_s:
        return Decision(
            kind=DecisionKind.SEND_STOP,
            reason=f"saw {view.target} from new instance {candidate.instance_id}",
            candidate_instance_id=candidate.instance_id,
        )
    return Decision(
        kind=DecisionKind.WAIT,
        reason=f"stop sent {view.stop.sent}x, last answer {view.stop.last_code}",
        candidate_instance_id=candidate.instance_id,
        retry_at=last + retry_s,
    )
