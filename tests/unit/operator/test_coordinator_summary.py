"""What the coordinator stores in the registry about an upgrade: structured fields, no text
rendered in the operator's time zone (the reader renders ``watch_until``)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from msgspec.structs import replace

from harmony_fleet.adapters.nats.kv import Entry
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


class _Bucket:
    """A bucket whose watch yields fixed entries, then ends."""

    def __init__(self, name: str, entries: list[Entry[UpgradeStatus]]) -> None:
        self.name = name
        self.entries = entries

    async def values(self) -> AsyncIterator[Entry[UpgradeStatus]]:
        for entry in self.entries:
            yield entry


async def test_a_status_whose_device_id_is_not_its_key_is_dropped_and_counted() -> None:
    """Device edge-a may write only its own status key, but may write anything there: a body
    naming edge-1 must not become edge-1's upgrade (fails when the body is believed)."""
    coord, registry = coordinator()
    forged = status(P.SUCCEEDED)  # names DEV
    honest = replace(status(P.STAGING), device_id="edge-a")
    bucket = _Bucket(
        "fleet_upgrade_status", [Entry("edge-a", forged, 1), Entry("edge-a", honest, 2)]
    )
    await coord._watch(bucket, coord.on_status)  # type: ignore[arg-type]
    assert coord.key_mismatches == 1
    assert registry.devices[DEV].upgrade is None
