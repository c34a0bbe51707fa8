"""Device edge-a attacks device B while B upgrades, with real agent processes (LocalFleet: the
operator and every agent hold their own credentials, as `fleet credentials issue` makes them).

edge-a forges B's candidate heartbeat (the operator's commit gate), sends B an ``upgrade_stop``
(the commit itself) and writes a "Succeeded" status for B: each is refused by the server. It
also writes that status under its own key, which it may: the operator drops and counts it. B
upgrades end to end exactly as without the attacker (ADR-022's invariants), on signed releases
(``testing.releases``): its reads of the repository are no violation either."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    Command,
    Heartbeat,
    Role,
    UpgradeStatus,
    Verb,
    encode,
    new_instance_id,
    subjects,
)
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.conftest import INTERVAL
from tests.e2e.support import DEV, QUICK, P, invariants, reaches, started
from tests.fleets import Built, build_versions
from tests.security.support import Attacker, attacker, local_fleet


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, ("1.0.0", "2.0.0"))


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[LocalFleet]:
    async with local_fleet(tmp_path / "fleet", built, INTERVAL) as f:
        yield f


async def _attack(a: Attacker, upgrade_id: str, instance: str, stop: asyncio.Event) -> int:
    """Forge, every 0.2 s until ``stop``: B's candidate heartbeat, B's stop, B's status."""
    rounds = 0
    while not stop.is_set():
        now = time.time()
        beat = Heartbeat(
            device_id=DEV,
            agent_version="2.0.0",
            instance_id=instance,
            role=Role.CANDIDATE,
            upgrade_id=upgrade_id,
            seq=rounds,
            uptime_s=1.0,
            sent_at=now,
            interval_s=INTERVAL,
        )
        order = Command(
            command_id=f"c{rounds}",
            verb=Verb.UPGRADE_STOP,
            issued_at=now,
            expires_at=now + 30,
            args={"upgrade_id": upgrade_id},
        )
        status = UpgradeStatus(
            device_id=DEV,
            upgrade_id=upgrade_id,
            phase=AgentUpgradePhase.SUCCEEDED,
            from_version="1.0.0",
            to_version="2.0.0",
            instance_id=instance,
            started_at=now,
            updated_at=now,
        )
        with contextlib.suppress(Exception):
            await a.nc.publish(subjects.heartbeat(DEV), encode(beat))
            await a.nc.publish(subjects.command(DEV), encode(order))
            await a.nc.publish(f"$KV.fleet_upgrade_status.{DEV}", encode(status))
            # Allowed by its credentials (its own key), believed by no one (the body names B).
            await a.nc.publish("$KV.fleet_upgrade_status.edge-a", encode(status))
        rounds += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return rounds


async def test_b_upgrades_end_to_end_while_a_attacks_it(fleet: LocalFleet, tmp_path: Path) -> None:
    assert fleet.server is not None
    # on signed releases: B reads the repository by direct gets, which its credentials allow
    await started(fleet)  # pins the fleet's repository's root; 2.0.0 is published when asked
    a_creds = fleet.server.issue("device", "edge-a", tmp_path / "edge-a.creds")
    a = await attacker(fleet.server, a_creds, inbox_prefix=subjects.inbox_prefix("edge-a"))
    stop = asyncio.Event()
    try:
        marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
        forged = new_instance_id()
        attack = asyncio.ensure_future(_attack(a, marker.upgrade_id, forged, stop))
        await reaches(fleet, marker, P.SUCCEEDED)
        stop.set()
        assert await attack > 0
        await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)
        for subject in (
            subjects.heartbeat(DEV),
            subjects.command(DEV),
            f"$KV.fleet_upgrade_status.{DEV}",
        ):
            await a.refused(subject)
        attacked = (subjects.heartbeat(DEV), subjects.command(DEV), "fleet_upgrade_status")
        violations = [
            line
            for line in (fleet.workdir / "nats.log").read_text().splitlines()
            if "Violation" in line
        ]
        assert violations, "the server logged the refusals"
        assert all(any(s in line for s in attacked) for line in violations), (
            "only the attacker was refused anything: the agents and the operator need nothing "
            f"their credentials do not allow: {violations[:5]}"
        )
        assert fleet.operator is not None
        assert fleet.operator.coordinator.key_mismatches > 0, "the operator saw it and dropped it"
        status = await fleet.status(DEV)
        assert status is not None and status.instance_id != forged, status
        last = fleet.monitor.devices[DEV].last
        assert last is not None and last.instance_id != forged
    finally:
        stop.set()
        await a.close()
