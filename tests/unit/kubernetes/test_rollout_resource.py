"""The ``Rollout`` resource's pure half: spec -> rollout in KV (created, levers followed,
refusals), deletion -> abort, engine status -> resource status, and the generated CRD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from harmony_fleet.contracts import (
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
    UpgradeTimeouts,
)
from harmony_fleet.contracts.rollout import DeviceOutcome
from harmony_fleet.operator.kubernetes import rollout_crd
from harmony_fleet.operator.kubernetes.resources import SpecReason
from harmony_fleet.operator.kubernetes.rollout_specs import abandoned, reconcile
from harmony_fleet.operator.kubernetes.rollout_statuses import rollout_status

NS = "fleet"
NOW = 1_790_000_000.0
S = DeviceState
COMMITTED = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / "crd-rollout.yaml"


def created(spec: dict[str, Any], name: str = "spring") -> Rollout:
    verdict = reconcile(name, spec, None, namespace=NS, now=NOW)
    assert verdict.put is not None and verdict.valid, verdict
    return verdict.put


def test_a_full_spec_becomes_the_rollout_fleet_rollout_create_would_write() -> None:
    rollout = created(
        {
            "version": "2.0.0",
            "selector": {"site": "lyon"},
            "canary": "2%",
            "maxInFlight": 3,
            "maxDownloads": 2,
            "spreadSeconds": 5,
            "soakSeconds": 60,
            "haltFailureRate": 20,
            "windows": ["Mon-Fri 02:00-05:00 Europe/Paris"],
            "deadline": "2026-12-24T18:00:00Z",
            "strata": ["arch"],
            "timeouts": {"watchSeconds": 30},
            "paused": True,
        }
    )
    assert (rollout.name, rollout.version, rollout.selector) == (
        "spring",
        "2.0.0",
        {"site": "lyon"},
    )
    assert (rollout.canary, rollout.max_in_flight) == (Share(percent=2.0), Share(count=3))
    assert (rollout.max_downloads, rollout.spread_s, rollout.soak_s) == (2, 5.0, 60.0)
    assert rollout.halt_failure_rate == 20.0 and rollout.strata == ["arch"]
    assert rollout.windows[0].time_zone == "Europe/Paris"
    assert rollout.deadline == 1_798_135_200.0
    assert rollout.timeouts == UpgradeTimeouts(watch_s=30.0)
    assert rollout.paused and not rollout.undo_requested
    assert (rollout.created_at, rollout.created_by) == (NOW, "kubernetes:fleet/spring")


def test_defaults_are_the_clis() -> None:
    rollout = created({"version": "2.0.0"})
    assert rollout == Rollout(
        name="spring", version="2.0.0", created_at=NOW, created_by="kubernetes:fleet/spring"
    )


@pytest.mark.parametrize(
    ("name", "spec", "reason", "words"),
    [
        ("spring", {}, SpecReason.INVALID_VERSION, "spec.version is required"),
        ("spring", {"version": "2..0"}, SpecReason.INVALID_VERSION, "spec.version"),
        ("Spring.A", {"version": "2.0.0"}, SpecReason.INVALID_NAME, "DNS label"),
        ("spring", {"version": "2.0.0", "canary": "lots"}, SpecReason.INVALID_SPEC, "spec.canary"),
        ("spring", {"version": "2.0.0", "canary": True}, SpecReason.INVALID_SPEC, "spec.canary"),
        ("spring", {"version": "2.0.0", "maxInFlight": "150%"}, SpecReason.INVALID_SPEC, "100%"),
        ("spring", {"version": "2.0.0", "windows": ["noon"]}, SpecReason.INVALID_SPEC, "windows"),
        ("spring", {"version": "2.0.0", "deadline": "soon"}, SpecReason.INVALID_SPEC, "RFC 3339"),
        (
            "spring",
            {"version": "2.0.0", "deadline": "2026-12-24T18:00:00"},
            SpecReason.INVALID_SPEC,
            "RFC 3339",
        ),
        (
            "spring",
            {"version": "2.0.0", "soakSeconds": -1},
            SpecReason.INVALID_SPEC,
            "spec.soakSeconds",
        ),
        ("spring", {"version": "2.0.0", "undo": "yes"}, SpecReason.INVALID_SPEC, "`spec.undo`"),
        (
            "spring",
            {"version": "2.0.0", "timeouts": {"watchSeconds": -1}},
            SpecReason.INVALID_SPEC,
            "`spec.timeouts.watchSeconds`",
        ),
        ("spring", {"version": "2.0.0", "timeouts": {"x": 1}}, SpecReason.INVALID_SPEC, "timeouts"),
        ("spring", {"version": "2.0.0", "canery": 5}, SpecReason.INVALID_SPEC, "unknown canery"),
    ],
)
def test_an_unusable_spec_is_refused_with_the_reason_and_nothing_written(
    name: str, spec: dict[str, Any], reason: SpecReason, words: str
) -> None:
    verdict = reconcile(name, spec, None, namespace=NS, now=NOW)
    assert verdict.put is None and not verdict.valid
    assert verdict.reason is reason
    assert words in verdict.message


def test_the_levers_follow_the_spec_and_undo_cannot_be_taken_back() -> None:
    rollout = created({"version": "2.0.0"})
    steady = reconcile("spring", {"version": "2.0.0"}, rollout, namespace=NS, now=NOW + 9)
    assert steady.put is None and steady.valid  # nothing changed: no write

    paused = reconcile(
        "spring", {"version": "2.0.0", "paused": True}, rollout, namespace=NS, now=NOW
    )
    assert paused.put == msgspec.structs.replace(rollout, paused=True)
    resumed = reconcile("spring", {"version": "2.0.0"}, paused.put, namespace=NS, now=NOW)
    assert resumed.put == rollout

    undo = reconcile("spring", {"version": "2.0.0", "undo": True}, rollout, namespace=NS, now=NOW)
    assert undo.put is not None and undo.put.undo_requested
    again = reconcile(
        "spring", {"version": "2.0.0", "undo": False}, undo.put, namespace=NS, now=NOW
    )
    assert again.put is None, "an undo is not taken back"


def test_changing_what_defines_a_rollout_is_refused_but_the_levers_still_work() -> None:
    rollout = created({"version": "2.0.0"})
    verdict = reconcile(
        "spring", {"version": "3.0.0", "paused": True}, rollout, namespace=NS, now=NOW
    )
    assert (verdict.valid, verdict.reason) == (False, SpecReason.IMMUTABLE)
    assert verdict.put == msgspec.structs.replace(rollout, paused=True)
    assert verdict.put.version == "2.0.0"


def test_a_rollout_someone_else_created_is_never_touched() -> None:
    by_cli = Rollout(name="spring", version="2.0.0", created_at=NOW, created_by="alice@host")
    verdict = reconcile("spring", {"version": "2.0.0", "undo": True}, by_cli, namespace=NS, now=NOW)
    assert (verdict.put, verdict.valid, verdict.reason) == (None, False, SpecReason.NAME_TAKEN)
    other_ns = created({"version": "2.0.0"})
    assert reconcile("spring", {"version": "2.0.0"}, other_ns, namespace="b", now=NOW).put is None


def test_a_deleted_resource_aborts_its_rollout_and_only_its_own() -> None:
    ours = created({"version": "2.0.0"})
    assert abandoned(ours, namespace=NS, names={"spring"}) is None  # still there
    aborted = abandoned(ours, namespace=NS, names=set())
    assert aborted == msgspec.structs.replace(ours, aborted=True)
    assert abandoned(aborted, namespace=NS, names=set()) is None  # once
    by_cli = Rollout(name="autumn", version="2.0.0", created_at=NOW, created_by="alice")
    assert abandoned(by_cli, namespace=NS, names=set()) is None
    assert abandoned(ours, namespace="other", names=set()) is None
    undone = msgspec.structs.replace(ours, undo_requested=True)
    assert abandoned(undone, namespace=NS, names=set()) is None, "an undo goes on"


def test_the_status_shows_phase_wave_and_the_three_counts() -> None:
    status = RolloutStatus(
        name="spring",
        phase=RolloutPhase.HALTED,
        wave=2,
        halted_at=NOW,
        halt_reason="wave 2: 2 of 3 devices failed (threshold 10%)",
        halted_devices=[
            DeviceOutcome(device_id="edge-1", state=S.ROLLED_BACK, reason="post_commit"),
        ],
        counts={S.SUCCEEDED: 4, S.FAILED: 1, S.ROLLED_BACK: 1, S.PENDING: 3, S.IN_PROGRESS: 1},
        undo_counts={S.SUCCEEDED: 2},
        updated_at=NOW,
    )
    body = rollout_status(
        status, version="2.0.0", valid=True, reason="Accepted", message="", previous=None, now=NOW
    )
    assert (body["phase"], body["wave"], body["version"]) == ("Halted", 2, "2.0.0")
    assert (body["done"], body["failed"], body["pending"]) == (4, 2, 4)
    assert (body["inProgress"], body["skipped"]) == (1, 0)
    assert body["haltReason"].startswith("wave 2")
    assert body["haltedDevices"] == [
        {"device": "edge-1", "state": "rolled_back", "reason": "post_commit"}
    ]
    assert body["undo"]["done"] == 2
    assert body["haltedAt"] == "2026-09-21T14:13:20Z"
    [cond] = body["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("SpecValid", "True", "Accepted")

    later = rollout_status(
        status, version="2.0.0", valid=True, reason="Accepted", message="", previous=body,
        now=NOW + 60,
    )  # fmt: skip
    assert later == body, "a steady rollout gives the same status: no patch"
    refused = rollout_status(
        None, version=None, valid=False, reason="Immutable", message="m", previous=body,
        now=NOW + 60,
    )  # fmt: skip
    assert "phase" not in refused
    assert refused["conditions"][0]["lastTransitionTime"] == "2026-09-21T14:14:20Z"


def test_the_committed_crd_is_the_generated_one() -> None:
    pytest.importorskip("yaml", reason="the generator renders with PyYAML (kubernetes extra)")
    assert COMMITTED.read_text() == rollout_crd.render(), (
        "deploy/kubernetes/crd-rollout.yaml is stale: run `python -m "
        "harmony_fleet.operator.kubernetes.rollout_crd > deploy/kubernetes/crd-rollout.yaml`"
    )


def test_kubectl_get_rollouts_shows_version_phase_and_the_counts() -> None:
    version = rollout_crd.rollout_crd()["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Version"] == ".spec.version"
    assert columns["Phase"] == ".status.phase"
    assert [columns[n] for n in ("Done", "Failed", "Pending")] == [
        ".status.done",
        ".status.failed",
        ".status.pending",
    ]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["status"]["properties"]["phase"]["enum"] == [p.value for p in RolloutPhase]
    assert {"paused", "undo"} <= set(schema["spec"]["properties"])
    # every status key the operator writes is declared (a real server would prune the rest)
    body = rollout_status(
        RolloutStatus(name="x", halt_reason="r", halted_at=NOW, undo_counts={S.PENDING: 1}),
        version="2.0.0", valid=True, reason="Accepted", message="", previous=None, now=NOW,
    )  # fmt: skip
    assert set(body) <= set(schema["status"]["properties"])
    assert set(body["undo"]) <= set(schema["status"]["properties"]["undo"]["properties"])
