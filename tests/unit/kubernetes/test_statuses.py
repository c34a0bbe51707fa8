"""The pure status layer: registry record, marker, agent status, verdict -> Device status."""

from __future__ import annotations

from typing import Any

import pytest

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeSummary,
)
from harmony_fleet.core.upgrade.requests import clock_time
from harmony_fleet.operator.kubernetes.resources import SpecReason
from harmony_fleet.operator.kubernetes.statuses import (
    SpecVerdict,
    device_status,
    reason_of,
    rfc3339,
    status_patch,
)

P = AgentUpgradePhase
T0 = 1_800_000_000.0
UID = "u0123456789abcdef0123"


def record(*, online: bool = True, upgrade: UpgradeSummary | None = None) -> DeviceRecord:
    return DeviceRecord(
        device_id="edge-1",
        current_version="1.0.0",
        online=online,
        first_seen=T0 - 100,
        last_seen=T0 - 5,
        heartbeat_interval_s=5.0,
        upgrade=upgrade,
    )


def summary(phase: P, message: str = "", at: float = T0 - 10) -> UpgradeSummary:
    return UpgradeSummary(
        upgrade_id=UID, phase=phase, target_version="2.0.0", message=message, updated_at=at
    )


def agent_status(phase: P, **kw: Any) -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id=kw.pop("upgrade_id", UID),
        device_id="edge-1",
        phase=phase,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="0" * 32,
        started_at=T0 - 60,
        updated_at=T0 - 20,
        **kw,
    )


def marker() -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=UID,
        device_id="edge-1",
        target_version="2.0.0",
        artifact_url="http://a/agent",
        sha256="a" * 64,
        requested_at=T0 - 90,
    )


def cond(body: Any, type_: str) -> dict[str, Any]:
    return next(c for c in body["conditions"] if c["type"] == type_)


def test_time_is_whole_seconds_utc() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1.9) == "1970-01-01T00:00:01Z"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("candidate_exited", "CandidateExited"),
        ("hold_timeout", "HoldTimeout"),
        ("", "RolledBack"),
        ("__", "RolledBack"),
        ("9lives", "RolledBack"),
    ],
)
def test_error_codes_become_condition_reasons(code: str, reason: str) -> None:
    assert reason_of(code, "RolledBack") == reason


def test_an_idle_online_device() -> None:
    body = device_status(record=record(), now=T0)
    assert body["currentVersion"] == "1.0.0"
    assert "upgrade" not in body
    assert [c["type"] for c in body["conditions"]] == ["Online", "UpgradeProgressing", "RolledBack"]
    online = cond(body, "Online")
    assert (online["status"], online["reason"]) == ("True", "HeartbeatsArriving")
    assert online["lastTransitionTime"] == rfc3339(T0)
    assert cond(body, "UpgradeProgressing")["status"] == "False"


def test_offline_and_never_seen() -> None:
    off = cond(device_status(record=record(online=False), now=T0), "Online")
    assert (off["status"], off["reason"]) == ("False", "HeartbeatsMissing")
    assert rfc3339(T0 - 5) in off["message"]
    never = device_status(
        record=None,
        verdict=SpecVerdict(valid=False, reason=SpecReason.INVALID_NAME, message="bad"),
        now=T0,
    )
    assert "currentVersion" not in never
    assert cond(never, "Online")["status"] == "Unknown"
    spec = cond(never, "SpecValid")
    assert (spec["status"], spec["reason"], spec["message"]) == ("False", "InvalidName", "bad")


def test_an_upgrade_in_progress_uses_the_agents_timestamps() -> None:
    body = device_status(
        record=record(upgrade=summary(P.STAGING, "42% downloaded")),
        marker=marker(),
        status=agent_status(P.STAGING),
        now=T0,
    )
    up = body["upgrade"]
    assert up == {
        "id": UID,
        "phase": "Staging",
        "targetVersion": "2.0.0",
        "message": "42% downloaded",
        "startedAt": rfc3339(T0 - 60),
        "updatedAt": rfc3339(T0 - 20),
    }
    progressing = cond(body, "UpgradeProgressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Staging")
    assert "42% downloaded" in progressing["message"]


def test_before_the_agent_speaks_the_marker_dates_the_upgrade() -> None:
    body = device_status(record=record(upgrade=summary(P.REQUESTED)), marker=marker(), now=T0)
    assert body["upgrade"]["startedAt"] == rfc3339(T0 - 90)
    assert body["upgrade"]["updatedAt"] == rfc3339(T0 - 10)


def test_inputs_of_another_upgrade_are_ignored() -> None:
    other = agent_status(P.FAILED, upgrade_id="uother", error_code="integrity")
    body = device_status(record=record(upgrade=summary(P.REQUESTED)), status=other, now=T0)
    assert "startedAt" not in body["upgrade"]
    assert cond(body, "UpgradeProgressing")["reason"] == "Requested"


def test_a_rollback_names_the_agents_reason_and_exit_code() -> None:
    status = agent_status(
        P.ROLLED_BACK, error_code="candidate_exited", error_detail="exit 3", candidate_exit_code=3
    )
    body = device_status(
        record=record(upgrade=summary(P.ROLLED_BACK, "candidate_exited: exit 3")),
        status=status,
        now=T0,
    )
    rolled = cond(body, "RolledBack")
    assert (rolled["status"], rolled["reason"]) == ("True", "CandidateExited")
    assert "candidate exit code 3" in rolled["message"]
    progressing = cond(body, "UpgradeProgressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "RolledBack")


def test_a_committed_upgrade_says_until_when_it_is_watched_without_a_countdown() -> None:
    watched = UpgradeSummary(
        upgrade_id=UID,
        phase=P.COMMITTED,
        target_version="2.0.0",
        message="the new main heartbeats",
        updated_at=T0 - 10,
        watch_until=T0 + 600,
    )
    body = device_status(record=record(upgrade=watched), now=T0)
    up = body["upgrade"]
    assert up["watchUntil"] == rfc3339(T0 + 600)
    assert up["message"] == f"committed, watched until {clock_time(T0 + 600)}"
    assert "watched until" in cond(body, "UpgradeProgressing")["message"]
    # The same state a second later is the same status: no API write per second.
    later = device_status(record=record(upgrade=watched), previous=dict(body), now=T0 + 1)
    assert status_patch(dict(body), later) is None
    ended = device_status(record=record(upgrade=watched), now=T0 + 601)
    assert "steadily" in ended["upgrade"]["message"]


def test_success_ends_progress_without_rollback() -> None:
    body = device_status(record=record(upgrade=summary(P.SUCCEEDED)), now=T0)
    assert cond(body, "UpgradeProgressing")["status"] == "False"
    assert cond(body, "RolledBack")["status"] == "False"


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = device_status(record=record(), now=T0)
    later = device_status(record=record(), previous=dict(first), now=T0 + 100)
    assert cond(later, "Online")["lastTransitionTime"] == rfc3339(T0)
    gone = device_status(record=record(online=False), previous=dict(later), now=T0 + 200)
    assert cond(gone, "Online")["lastTransitionTime"] == rfc3339(T0 + 200)
    assert cond(gone, "UpgradeProgressing")["lastTransitionTime"] == rfc3339(T0)


def test_no_patch_when_nothing_changed() -> None:
    body = device_status(record=record(), now=T0)
    assert (
        status_patch(dict(body), device_status(record=record(), previous=dict(body), now=T0 + 60))
        is None
    )


def test_a_patch_sends_the_whole_status_and_deletes_what_went_away() -> None:
    before = device_status(
        record=record(upgrade=summary(P.STAGING)), status=agent_status(P.STAGING), now=T0
    )
    after = device_status(record=record(), previous=dict(before), now=T0 + 1)
    patch = status_patch(dict(before), after)
    assert patch is not None
    assert patch["status"]["upgrade"] is None
    assert patch["status"]["conditions"] == after["conditions"]
    first = status_patch(None, before)
    assert first == {"status": dict(before)}


def test_a_key_dropped_inside_upgrade_is_sent_as_null() -> None:
    with_start = device_status(
        record=record(upgrade=summary(P.STAGING)), status=agent_status(P.STAGING), now=T0
    )
    without = device_status(record=record(upgrade=summary(P.STAGING)), now=T0)
    patch = status_patch(dict(with_start), without)
    assert patch is not None and patch["status"]["upgrade"]["startedAt"] is None
