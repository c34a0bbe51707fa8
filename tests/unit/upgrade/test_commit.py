"""The operator's commit decision: no stop without the new version seen from a new instance."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import pytest

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.heartbeat import Heartbeat, Role
from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.registry import InstanceSeen
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.contracts.upgrade import UpgradeStatus
from harmony_fleet.core.upgrade.commit import (
    STOP_RETRY_S,
    CommitView,
    DecisionKind,
    ObservedHeartbeat,
    StopLedger,
    decide,
    instances_before,
)

from .support import CAND, NEW, OLD, OTHER, OWN, U1, U2, marker

T0 = 1000.0  # operator time when the marker was written
NEW_MAIN = InstanceId("d" * 32)


def seen_hb(
    instance: InstanceId = CAND,
    version: Version = NEW,
    *,
    at: float = T0 + 5,
    role: Role = Role.CANDIDATE,
    uid: UpgradeId | None = U1,
) -> ObservedHeartbeat:
    return ObservedHeartbeat(
        instance_id=instance, agent_version=version, role=role, received_at=at, upgrade_id=uid
    )


def status(phase: P, uid: str = U1) -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id=uid,
        device_id="dev-1",
        phase=phase,
        from_version=OLD,
        to_version=NEW,
        instance_id=OWN,
        started_at=T0,
        updated_at=T0 + 1,
    )


def view(*hbs: ObservedHeartbeat, **changes: object) -> CommitView:
    base = CommitView(
        marker=marker(),
        marker_seen_at=T0,
        old_instance_id=OWN,
        instances_before_marker=frozenset({OWN}),
        heartbeats=hbs,
        status=status(P.CUTOVER_READY),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_no_heartbeat_no_stop() -> None:
    assert decide(view(), T0 + 10).kind is DecisionKind.WAIT


def test_new_version_from_a_new_instance_after_the_marker_sends_the_stop() -> None:
    d = decide(view(seen_hb()), T0 + 10)
    assert d.kind is DecisionKind.SEND_STOP and d.candidate_instance_id == CAND


def test_target_version_from_the_old_instance_never_counts() -> None:
    assert decide(view(seen_hb(OWN)), T0 + 10).kind is DecisionKind.WAIT


@pytest.mark.parametrize("role", [Role.MAIN, Role.CANDIDATE])
def test_an_instance_seen_before_the_marker_never_counts(role: Role) -> None:
    # Without an upgrade id, only the operator's own clock can tell "after the marker".
    v = view(seen_hb(OTHER, role=role, uid=None), instances_before_marker=frozenset({OWN, OTHER}))
    assert decide(v, T0 + 10).kind is DecisionKind.WAIT


@pytest.mark.parametrize("when", [T0 - 1, T0])
def test_heartbeats_from_before_the_marker_never_count(when: float) -> None:
    assert decide(view(seen_hb(at=when, uid=None)), T0 + 10).kind is DecisionKind.WAIT


@pytest.mark.parametrize("when", [T0 - 600, T0 + 5])
def test_the_candidate_of_this_upgrade_counts_by_its_id_not_by_a_clock(when: float) -> None:
    """After an operator restart the candidate may be known from before it (and the marker's
    ``requested_at`` is another machine's clock): its upgrade id, fresh per marker, proves it
    is this upgrade's candidate, so it still gets its stop instead of a rollback."""
    v = view(seen_hb(at=when), instances_before_marker=frozenset({OWN, CAND}))
    d = decide(v, T0 + 10)
    assert d.kind is DecisionKind.SEND_STOP and d.candidate_instance_id == CAND


def test_the_old_instance_never_counts_even_with_this_upgrades_id() -> None:
    assert decide(view(seen_hb(OWN)), T0 + 10).kind is DecisionKind.WAIT


def test_the_old_version_from_a_new_instance_does_not_count() -> None:
    assert decide(view(seen_hb(version=OLD)), T0 + 10).kind is DecisionKind.WAIT


def test_a_candidate_of_another_upgrade_does_not_count() -> None:
    assert decide(view(seen_hb(uid=U2)), T0 + 10).kind is DecisionKind.WAIT


def test_unacknowledged_stop_is_retried_after_the_interval() -> None:
    ledger = StopLedger().sent_at(T0 + 10).replied(ReplyCode.NOT_ARMED)
    v = view(seen_hb(), stop=ledger)
    early = decide(v, T0 + 10 + STOP_RETRY_S / 2)
    assert early.kind is DecisionKind.WAIT and early.retry_at == T0 + 10 + STOP_RETRY_S
    assert decide(v, T0 + 10 + STOP_RETRY_S).kind is DecisionKind.SEND_STOP


def test_an_acknowledged_stop_is_not_resent() -> None:
    ledger = StopLedger().sent_at(T0 + 10).replied(ReplyCode.OK)
    assert ledger.acknowledged
    assert decide(view(seen_hb(), stop=ledger), T0 + 100).kind is DecisionKind.WAIT


def test_a_refusal_does_not_acknowledge() -> None:
    ledger = StopLedger().sent_at(1).replied(ReplyCode.WRONG_UPGRADE)
    assert not ledger.acknowledged and ledger.last_code is ReplyCode.WRONG_UPGRADE


@pytest.mark.parametrize("phase", [P.FAILED, P.ROLLED_BACK, P.SUCCEEDED])
def test_terminal_status_stops_everything(phase: P) -> None:
    d = decide(view(seen_hb(), status=status(phase)), T0 + 10)
    assert d.kind is DecisionKind.FINISHED and d.phase is phase


def test_status_of_another_upgrade_is_disregarded() -> None:
    d = decide(view(seen_hb(), status=status(P.ROLLED_BACK, uid=U2)), T0 + 10)
    assert d.kind is DecisionKind.SEND_STOP


def test_watching_needs_a_main_heartbeat_of_the_target_from_a_new_instance_after_commit() -> None:
    committed = status(P.COMMITTED)
    v = view(seen_hb(), status=committed, status_seen_at=T0 + 20)
    assert decide(v, T0 + 21).kind is DecisionKind.WAIT
    # The candidate (role candidate) is not the new main.
    v = replace(v, heartbeats=(seen_hb(), seen_hb(at=T0 + 25)))
    assert decide(v, T0 + 26).kind is DecisionKind.WAIT
    # The old instance claiming main with the target version does not count either.
    v = replace(v, heartbeats=(seen_hb(OWN, role=Role.MAIN, at=T0 + 25),))
    assert decide(v, T0 + 26).kind is DecisionKind.WAIT
    # A main heartbeat from before the committed status was seen does not count.
    v = replace(v, heartbeats=(seen_hb(NEW_MAIN, role=Role.MAIN, at=T0 + 19, uid=None),))
    assert decide(v, T0 + 26).kind is DecisionKind.WAIT
    v = replace(v, heartbeats=(seen_hb(NEW_MAIN, role=Role.MAIN, at=T0 + 25, uid=None),))
    d = decide(v, T0 + 26)
    assert d.kind is DecisionKind.WATCHING and d.candidate_instance_id == NEW_MAIN
    assert d.phase is P.COMMITTED, "seen running is not Succeeded: the device still watches it"


def test_ack_then_new_main_is_watched_even_if_the_status_write_is_late() -> None:
    ledger = StopLedger().sent_at(T0 + 10).replied(ReplyCode.OK)
    v = view(seen_hb(), seen_hb(NEW_MAIN, role=Role.MAIN, at=T0 + 30, uid=None), stop=ledger)
    assert decide(v, T0 + 31).kind is DecisionKind.WATCHING


def test_watching_carries_the_end_of_the_window_and_only_the_agent_ends_it() -> None:
    committed = msgspec.structs.replace(status(P.COMMITTED), watch_until=T0 + 600)
    new_main = seen_hb(NEW_MAIN, role=Role.MAIN, at=T0 + 25, uid=None)
    v = view(new_main, status=committed, status_seen_at=T0 + 20)
    d = decide(v, T0 + 500)
    assert d.kind is DecisionKind.WATCHING and d.watch_until == T0 + 600
    # Long after the window: still the agent's word that ends it, never the operator's clock.
    assert decide(v, T0 + 6000).kind is DecisionKind.WATCHING
    for phase in (P.SUCCEEDED, P.ROLLED_BACK):
        ended = msgspec.structs.replace(status(phase), error_code="post_commit")
        d = decide(replace(v, status=ended), T0 + 30)
        assert d.kind is DecisionKind.FINISHED and d.phase is phase


def test_instances_before_reads_the_registry_after_an_operator_restart() -> None:
    seen_list = [
        InstanceSeen(
            instance_id=OWN,
            agent_version=OLD,
            role=Role.MAIN,
            first_seen=T0 - 100,
            last_seen=T0 + 50,
        ),
        InstanceSeen(
            instance_id=CAND,
            agent_version=NEW,
            role=Role.CANDIDATE,
            first_seen=T0 + 5,
            last_seen=T0 + 50,
        ),
    ]
    assert instances_before(seen_list, T0) == frozenset({OWN})


def test_observed_heartbeat_from_the_wire() -> None:
    wire = Heartbeat(
        device_id="dev-1",
        instance_id=CAND,
        agent_version=NEW,
        role=Role.CANDIDATE,
        seq=1,
        sent_at=1.0,
        uptime_s=0.5,
        upgrade_id=U1,
    )
    assert ObservedHeartbeat.of(wire, received_at=T0 + 1) == seen_hb(at=T0 + 1)
