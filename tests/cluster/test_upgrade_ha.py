"""Upgrades ride through the loss of the active operator on a 3-node cluster (ADR-022, ADR-023).

Two ``fleet operator`` processes (lease TTL 2 s), two supervised devices running real agent
artifacts. The active operator is frozen (SIGSTOP) while the devices stage and verify, and
killed (SIGKILL) once they wait at CutoverReady: nobody has sent a stop. The standby takes the
lease over, reads every marker and status again, sees the candidates heartbeat and commits each
upgrade exactly once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.contracts import UPGRADE_STATUS, AgentUpgradePhase, subjects
from harmony_fleet.testing.clusterfleet import ClusterFleet
from tests.fleets import Built, build_versions, running
from tests.helpers import eventually

P = AgentUpgradePhase
DEVICES = ("edge-1", "edge-2")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, ("1.0.0", "2.0.0"))


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[ClusterFleet]:
    fleet = ClusterFleet(tmp_path / "fleet", interval_s=0.5, operators=2, lease_ttl_s=2.0)
    async with running(fleet, built) as f:
        yield f


async def _phase(fleet: ClusterFleet, device: str, uid: str) -> P | None:
    status = await fleet.status(device)
    return status.phase if status is not None and status.upgrade_id == uid else None


async def test_the_standby_commits_each_upgrade_exactly_once_after_the_active_one_dies(
    fleet: ClusterFleet,
) -> None:
    await eventually(fleet.active_operator, timeout=60, what="an active operator")
    active = await fleet.active_operator()
    assert active is not None
    standby = next(name for name in fleet.operator_procs if name != active)
    for dev in DEVICES:
        await fleet.add_device(dev, "1.0.0")
    for dev in DEVICES:
        await eventually(lambda d=dev: fleet.record(d), timeout=60, what=f"{dev} registered")

    os.kill(fleet.operator_procs[active].pid, signal.SIGSTOP)  # it sends no stop from now on
    markers = {dev: await fleet.request_upgrade(dev, "2.0.0") for dev in DEVICES}
    for dev, marker in markers.items():
        await eventually(
            lambda d=dev, m=marker: _at_cutover(fleet, d, m.upgrade_id),
            timeout=90, what=f"{dev} at CutoverReady",
        )  # fmt: skip
    fleet.kill_operator(active)

    for dev, marker in markers.items():
        await eventually(
            lambda d=dev, m=marker: _succeeded(fleet, d, m.upgrade_id),
            timeout=120, what=f"{dev} Succeeded under the standby",
        )  # fmt: skip
    assert await fleet.active_operator() == standby
    lease = await fleet.lease()
    assert lease is not None and lease.epoch == 2
    assert fleet.nc is not None
    statuses = (await fleet.nc.jetstream().key_value(subjects.BUCKET_UPGRADE_STATUS)).history
    for dev, marker in markers.items():
        assert fleet.devices[dev].layout.current_version() == "2.0.0"
        assert len(fleet.agent_processes(dev)) == 1
        seen = [UPGRADE_STATUS.decode(e.value or b"") for e in await statuses(dev)]
        ours = [s for s in seen if s.upgrade_id == marker.upgrade_id]
        # The old agent commits (swap, status Committed) once; the new main then writes its
        # own Committed (watching), then Succeeded. A second commit would be a second
        # Committed written by the committing (old) instance.
        committers = [s.instance_id for s in ours if s.phase is P.COMMITTED]
        assert committers and committers.count(committers[0]) == 1, committers
        record = await fleet.record(dev)
        assert record is not None and record.lease_epoch == 2


async def _at_cutover(fleet: ClusterFleet, device: str, uid: str) -> bool:
    return await _phase(fleet, device, uid) in (P.CUTOVER_READY, P.HOLDING)


async def _succeeded(fleet: ClusterFleet, device: str, uid: str) -> bool:
    return await _phase(fleet, device, uid) is P.SUCCEEDED
