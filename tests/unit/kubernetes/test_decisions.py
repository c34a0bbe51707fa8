"""The pure decision layer: Device.spec -> nothing, a marker, or a problem with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeId,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
)
from harmony_fleet.core.upgrade.trust import SignedRelease, target_path
from harmony_fleet.operator.kubernetes.decisions import (
    Action,
    Desired,
    SpecProblem,
    Trigger,
    marker_for,
    parse_spec,
    plan,
)
from harmony_fleet.operator.kubernetes.resources import SpecReason

P = AgentUpgradePhase
T0 = 1_800_000_000.0


def mk_marker(target: str = "2.0.0", uid: str = "uaaa") -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=uid,
        device_id="edge-1",
        target_version=target,
        artifact_url="http://a/agent",
        sha256="a" * 64,
        requested_at=T0,
    )


def mk_status(phase: P, uid: str = "uaaa", target: str = "2.0.0") -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id=uid,
        device_id="edge-1",
        phase=phase,
        from_version="1.0.0",
        to_version=target,
        instance_id="0" * 32,
        started_at=T0,
        updated_at=T0,
    )


WANT = Desired(device="edge-1", version="2.0.0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        ({"agentVersion": "2..0"}, SpecReason.INVALID_VERSION, "'2..0' is not a valid version"),
        ({"agentVersion": "a b"}, SpecReason.INVALID_VERSION, "spec.agentVersion"),
        ({"agentVersion": 2}, SpecReason.INVALID_VERSION, "must be a string, not int"),
        ({"agentVersion": "1", "force": "yes"}, SpecReason.INVALID_SPEC, "spec.force"),
    ],
)
def test_bad_specs_are_problems_that_name_the_field(
    spec: dict[str, Any], reason: SpecReason, text: str
) -> None:
    got = parse_spec("edge-1", spec)
    assert isinstance(got, SpecProblem)
    assert got.reason is reason and text in got.message and not got.retry


def test_a_name_that_is_no_device_id() -> None:
    got = parse_spec("Edge.1", {"agentVersion": "1.0.0"})
    assert isinstance(got, SpecProblem) and got.reason is SpecReason.INVALID_NAME


def test_no_version_asks_for_nothing_and_a_good_spec_parses() -> None:
    assert parse_spec("edge-1", {}) is None
    assert parse_spec("edge-1", {"agentVersion": ""}) is None
    assert parse_spec("edge-1", {"agentVersion": "2.0.0+b1", "force": True}) == Desired(
        device="edge-1",
        version="2.0.0+b1",  # type: ignore[arg-type]
        force=True,
    )


# (trigger, running, marker, status) -> action
CASES = [
    ("fresh device", Trigger.CHANGE, "1.0.0", None, None, Action.WRITE_MARKER),
    ("already there", Trigger.CHANGE, "2.0.0", None, None, Action.NOTHING),
    ("in flight, no status", Trigger.CHANGE, "1.0.0", mk_marker(), None, Action.NOTHING),
    (
        "in flight, old status",
        Trigger.RESUME,
        "1.0.0",
        mk_marker(),
        mk_status(P.FAILED, "uold"),
        Action.NOTHING,
    ),
    (
        "in flight, staging",
        Trigger.CHANGE,
        "1.0.0",
        mk_marker(),
        mk_status(P.STAGING),
        Action.NOTHING,
    ),
    ("done", Trigger.RESUME, "2.0.0", mk_marker(), mk_status(P.SUCCEEDED), Action.NOTHING),
    (
        "failed, restart does not retry",
        Trigger.RESUME,
        "1.0.0",
        mk_marker(),
        mk_status(P.ROLLED_BACK),
        Action.NOTHING,
    ),
    (
        "failed, asked again",
        Trigger.CHANGE,
        "1.0.0",
        mk_marker(),
        mk_status(P.FAILED),
        Action.WRITE_MARKER,
    ),
    (
        "another target in flight",
        Trigger.CHANGE,
        "1.0.0",
        mk_marker("3.0.0"),
        None,
        Action.WRITE_MARKER,
    ),
    (
        "spec changed while the operator was away",
        Trigger.RESUME,
        "1.0.0",
        mk_marker("3.0.0"),
        mk_status(P.SUCCEEDED, target="3.0.0"),
        Action.WRITE_MARKER,
    ),
    (
        "back to the running version cancels",
        Trigger.CHANGE,
        "2.0.0",
        mk_marker("3.0.0"),
        mk_status(P.STAGING, target="3.0.0"),
        Action.WRITE_MARKER,
    ),
    (
        "back to the running version, nothing in flight",
        Trigger.RESUME,
        "2.0.0",
        mk_marker("3.0.0"),
        mk_status(P.FAILED, target="3.0.0"),
        Action.NOTHING,
    ),
    ("device never seen", Trigger.RESUME, None, None, None, Action.WRITE_MARKER),
]


@pytest.mark.parametrize(
    ("trigger", "running", "marker", "status", "action"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan(
    trigger: Trigger,
    running: str | None,
    marker: UpgradeMarker | None,
    status: UpgradeStatus | None,
    action: Action,
) -> None:
    got = plan(WANT, trigger=trigger, current_version=running, marker=marker, status=status)
    assert got.action is action, got.why
    assert got.why


def test_a_restart_after_a_failure_says_how_to_ask_again() -> None:
    got = plan(
        WANT,
        trigger=Trigger.RESUME,
        current_version="1.0.0",
        marker=mk_marker(),
        status=mk_status(P.FAILED),
    )
    assert "change spec.agentVersion" in got.why and "Failed" in got.why


def release(version: str = "2.0.0") -> SignedRelease:
    return SignedRelease(
        path=target_path(version),
        version=version,
        url="http://art/agent-2.0.0.pyz",
        sha256="b" * 64,
        length=123,
    )


def test_an_unknown_release_is_a_problem_worth_retrying() -> None:
    got = marker_for(WANT, None, upgrade_id=UpgradeId("unew"), now=T0, source="ns/edge-1")
    assert isinstance(got, SpecProblem)
    assert got.reason is SpecReason.UNKNOWN_RELEASE and got.retry
    assert "fleet release publish ARTIFACT --version 2.0.0" in got.message
    wrong = marker_for(
        WANT, release("2.0.1"), upgrade_id=UpgradeId("unew"), now=T0, source="ns/edge-1"
    )
    assert isinstance(wrong, SpecProblem)


def test_the_marker_carries_the_release_and_where_it_came_from() -> None:
    want = Desired(device="edge-1", version="2.0.0", force=True)  # type: ignore[arg-type]
    got = marker_for(want, release(), upgrade_id=UpgradeId("unew"), now=T0, source="ns/edge-1")
    assert isinstance(got, UpgradeMarker)
    assert (got.upgrade_id, got.device_id, got.target_version) == ("unew", "edge-1", "2.0.0")
    assert (got.artifact_url, got.sha256, got.size) == ("http://art/agent-2.0.0.pyz", "b" * 64, 123)
    assert got.requested_by == "kubernetes:ns/edge-1" and got.force and got.requested_at == T0


def test_timeouts_in_the_spec_are_the_contracts_fields_in_camel_case() -> None:
    got = parse_spec(
        "edge-1",
        {"agentVersion": "2.0.0", "timeouts": {"watchSeconds": 5, "selfTestSeconds": 7.5}},
    )
    assert isinstance(got, Desired)
    assert (got.timeouts.watch_s, got.timeouts.self_test_s) == (5, 7.5)
    assert got.timeouts.hold_s == UpgradeTimeouts().hold_s
    made = marker_for(got, release(), upgrade_id=UpgradeId("u1"), now=T0, source="ns/edge-1")
    assert isinstance(made, UpgradeMarker) and made.timeouts == got.timeouts


@pytest.mark.parametrize(
    ("timeouts", "text"),
    [
        ({"watchSeconds": -1}, "spec.timeouts.watchSeconds"),
        ({"watchMaxFailures": 0}, "spec.timeouts.watchMaxFailures"),
        ({"watch_s": 1}, "unknown watch_s"),
        ("fast", "must be a map"),
    ],
)
def test_bad_timeouts_are_invalid_specs_naming_the_field(timeouts: Any, text: str) -> None:
    got = parse_spec("edge-1", {"agentVersion": "2.0.0", "timeouts": timeouts})
    assert isinstance(got, SpecProblem) and got.reason is SpecReason.INVALID_SPEC
    assert text in got.message, got.message
