"""The lines ``fleet upgrade --wait`` prints while it follows an upgrade."""

from __future__ import annotations

from harmony_fleet.cli.request import status_line
from harmony_fleet.contracts import AgentUpgradePhase, Progress, UpgradeStatus
from harmony_fleet.core.upgrade.requests import clock_time


def status(phase: AgentUpgradePhase, **kw: object) -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id="u1",
        device_id="edge-01",
        phase=phase,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="a" * 32,
        started_at=1.0,
        updated_at=2.0,
        **kw,  # type: ignore[arg-type]
    )


def test_a_committed_upgrade_says_until_when_it_is_watched() -> None:
    line = status_line(status(AgentUpgradePhase.COMMITTED, watch_until=1000.0), 900.0)
    assert line == f"edge-01: committed, watched until {clock_time(1000.0)}"


def test_other_phases_name_the_phase_then_the_detail() -> None:
    staging = status(AgentUpgradePhase.STAGING, progress=Progress(bytes_done=1, bytes_total=2))
    assert status_line(staging, 0.0).startswith("edge-01: Staging  50% of")
    assert status_line(status(AgentUpgradePhase.VERIFYING), 0.0) == "edge-01: Verifying"
