"""deploy/grafana/harmony-fleet.json asks only for metrics the operator exposes (a renamed
metric would leave a panel empty without anyone noticing)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="the [dashboard] extra")

from prometheus_client import generate_latest

from harmony_fleet.operator.http.metrics import Metrics
from harmony_fleet.operator.http.rollout_view import RolloutView
from harmony_fleet.operator.runtime import Operator, OperatorConfig

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "harmony-fleet.json"


def exposed() -> set[str]:
    metrics = Metrics(Operator(OperatorConfig()), RolloutView(), lambda: 0)
    text = generate_latest(metrics.registry).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}


def test_every_panel_queries_metrics_the_operator_exposes() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert exprs, "no panel"
    names = {n for e in exprs for n in re.findall(r"\bfleet_[a-z_]+", e)}
    families = exposed()
    unknown = set()
    for name in names:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        if base not in families and name not in families:
            unknown.add(name)
    assert not unknown, f"panels ask for metrics nobody exposes: {sorted(unknown)}"
    # The dashboard covers what the issue asked for.
    for wanted in (
        "fleet_devices",
        "fleet_devices_by_version",
        "fleet_heartbeats_ingested_total",
        "fleet_upgrades",
        "fleet_upgrade_outcomes_total",
        "fleet_rollbacks_total",
        "fleet_upgrade_time_to_commit_seconds_bucket",
        "fleet_upgrade_time_to_rollback_seconds_bucket",
        "fleet_rollout_devices",
        "fleet_security_events_total",
        "fleet_nats_connected",
    ):
        assert wanted in names, wanted
