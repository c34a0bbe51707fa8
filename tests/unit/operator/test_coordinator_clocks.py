"""No commit decision compares the operator's clock with another machine's (invariant 9).

The marker's ``requested_at`` comes from whoever wrote it (a laptop, a CI job), and a device's
``sent_at`` from the device: both are shown, never compared with the operator's own time.
"""

from __future__ import annotations

import msgspec
import pytest

from harmony_fleet.contracts import DeviceRecord, Heartbeat, Role, UpgradeMarker
from harmony_fleet.core.upgrade.commit import DecisionKind, decide
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.registry import Registry

T0 = 1_800_000_000.0
DEV = "edge-1"
OLD_MAIN = "a" * 32
CANDIDATE = "c" * 32


def beat(instance: str, version: str, role: Role, *, upgrade_id: str | None = None) -> Heartbeat:
    return Heartbeat(
        device_id=DEV,
        instance_id=instance,
        agent_version=version,
        role=role,
        seq=1,
        sent_at=0.0,  # the device's clock: never read by a decision
        uptime_s=1.0,
        upgrade_id=upgrade_id,
    )


@pytest.mark.parametrize("requester_skew_s", [-600.0, 0.0, 600.0])
def test_an_operator_restarted_mid_upgrade_still_commits_whatever_the_requesters_clock(
    requester_skew_s: float,
) -> None:
    """The operator restarts while the candidate beats: the restarted one knows the candidate
    from the registry (first seen before the restart). With the marker's ``requested_at`` taken
    as "when the marker was seen", a requester clock ahead of the operator's made the candidate
    "older than the marker": no stop, and the upgrade rolled back at the cutover timeout."""
    registry = Registry()
    registry.load(
        DeviceRecord(
            device_id=DEV, current_version="1.0.0", online=True, first_seen=T0, last_seen=T0
        ),
        now=T0,
    )
    registry.observe(beat(OLD_MAIN, "1.0.0", Role.MAIN), T0)
    registry.observe(beat(CANDIDATE, "2.0.0", Role.CANDIDATE, upgrade_id="u1"), T0 + 20)
    coordinator = Coordinator(registry)  # the restarted operator: nothing tracked yet
    marker = UpgradeMarker(
        upgrade_id="u1",
        device_id=DEV,
        target_version="2.0.0",
        artifact_url="http://artifacts.example/a.pyz",
        sha256="a" * 64,
        requested_at=T0 + 10 + requester_skew_s,
    )
    coordinator.on_marker(marker, T0 + 30)
    registry.ingest(
        f"fleet.{DEV}.heartbeat",
        msgspec.json.encode(beat(CANDIDATE, "2.0.0", Role.CANDIDATE, upgrade_id="u1")),
        T0 + 31,
    )
    decision = decide(coordinator.tracked[DEV].view, T0 + 31)
    assert decision.kind is DecisionKind.SEND_STOP, decision.reason
    assert decision.candidate_instance_id == CANDIDATE


def test_the_old_main_reporting_the_target_version_still_never_counts() -> None:
    registry = Registry()
    registry.observe(beat(OLD_MAIN, "1.0.0", Role.MAIN), T0)
    coordinator = Coordinator(registry)
    marker = UpgradeMarker(
        upgrade_id="u1",
        device_id=DEV,
        target_version="2.0.0",
        artifact_url="http://artifacts.example/a.pyz",
        sha256="a" * 64,
        requested_at=T0 + 3600,
    )
    coordinator.on_marker(marker, T0 + 1)
    coordinator.on_heartbeat(beat(OLD_MAIN, "2.0.0", Role.MAIN), T0 + 2)
    assert decide(coordinator.tracked[DEV].view, T0 + 2).kind is DecisionKind.WAIT
