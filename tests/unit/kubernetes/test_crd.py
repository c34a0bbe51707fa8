"""The CRD is generated from the contracts, and the committed YAML is what the generator says."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.contracts import AgentUpgradePhase
from harmony_fleet.contracts.ids import VERSION_PATTERN
from harmony_fleet.operator.kubernetes import crd

COMMITTED = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes" / "crd-device.yaml"


def test_the_committed_crd_is_the_generated_one() -> None:
    pytest.importorskip("yaml", reason="the generator renders with PyYAML (kubernetes extra)")
    assert COMMITTED.read_text() == crd.render(), (
        "deploy/kubernetes/crd-device.yaml is stale: run "
        "`python -m harmony_fleet.operator.kubernetes.crd > deploy/kubernetes/crd-device.yaml`"
    )


def test_the_schema_takes_phases_and_patterns_from_the_contracts() -> None:
    version = crd.device_crd()["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["upgrade"]["properties"]["phase"]["enum"] == [p.value for p in AgentUpgradePhase]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["agentVersion"]["maxLength"] == 64
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Version",
        "Desired",
        "Phase",
        "Online",
        "Age",
    ]


def test_look_ahead_becomes_a_cel_rule_with_the_same_meaning() -> None:
    import re

    field = crd.re2_field({"type": "string", "pattern": VERSION_PATTERN})
    assert "(?" not in field["pattern"]
    assert field["x-kubernetes-validations"] == [
        {"rule": "!self.contains('..')", "message": "must not contain '..'"}
    ]
    # pattern + rule accept exactly what the contract's pattern accepts.
    for candidate in ["1.0.0", "2..0", "a", "-x", "1.0.0+build_7", "x" * 64, "x" * 65, "1/2"]:
        ours = bool(re.match(field["pattern"], candidate)) and ".." not in candidate
        assert ours == bool(re.match(VERSION_PATTERN, candidate)), candidate


def test_unsupported_look_arounds_are_refused() -> None:
    with pytest.raises(ValueError, match="RE2"):
        crd.re2_field({"type": "string", "pattern": "^(?=a)b$"})
