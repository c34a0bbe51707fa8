"""What the coordinator stores in the registry about an upgrade: structured fields, no text
rendered in the operator's time zone (the reader renders ``watch_until``)."""

from __future__ import annotations

import re

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceRecord,
    Progress,
    UpgradeMarker,
    UpgradeStatus,
)
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.registry import Registry

P = AgentUpgradePhase
T0 = 1_800_000_000.0
DEV = "edge-1"


def coordinator() -> tuple[Coordinator, Registry]:
    registry = Registry()
    registry.load(
        DeviceRecord(
            device_id=DEV, current_version="1.0.0", online=True, first_seen=T0, last_seen=T0
        ),
        now=T0,
    )
    return Coordinator(registry), registry


def status(phase: P, **kw: object) -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id="u1",
        device_id=DEV,
        phase=phase,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="0" * 32,
        started_at=T0,
        updated_at=T0,
        **kw,  # type: ignore[arg-type]
    )


def test_a_committed_status_is_stored_with_the_end_of_its_window_not_a_clock_time() -> None:
    coord, registry = coordinator()
    coord.on_marker(
        UpgradeMarker(
            upgrade_id="u1",
            device_id=DEV,
            target_version="2.0.0",
            artifact_url="http://a/x",
            sha256="a" * 64,
            requested_at=T0,
        ),
        T0,
    )
    coord.on_status(status(P.COMMITTED, watch_until=T0 + 600), T0 + 1)
    summary = registry.devices[DEV].upgrade
    assert summary is not None
    assert summary.phase is P.COMMITTED
    assert summary.watch_until == T0 + 600
    assert not re.search(r"\d\d:\d\d:\d\d", summary.message), summary.message


def test_progress_and_errors_are_stored_as_fields() -> None:
    coord, registry = coordinator()
    coord.on_status(status(P.STAGING, progress=Progress(bytes_done=1, bytes_total=4)), T0)
    summary = registry.devices[DEV].upgrade
    assert summary is not None and summary.progress == Progress(bytes_done=1, bytes_total=4)
    coord.on_status(
        status(P.ROLLED_BACK, error_code="candidate_exited", error_detail="exit 3"), T0 + 1
    )
    summary = registry.devices[DEV].upgrade
    assert summary is not None
    assert (summary.error_code, summary.error_detail) == ("candidate_exited", "exit 3")
