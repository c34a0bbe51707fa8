"""Rollouts with real agents and a real operator process (its `RolloutLoop` drives them).

Canaries then waves to the end with a good version; with a version whose self-test fails, a
halt on the canary with no other device touched.
"""

from __future__ import annotations

import time

import pytest

from harmony_fleet.adapters.nats.fleet_kv import ROLLOUT_STATUSES, ROLLOUTS, FleetKV
from harmony_fleet.contracts import Rollout, RolloutPhase, Share
from harmony_fleet.testing.localfleet import LOCAL_TIMEOUTS, LocalFleet
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

DEVICES = [f"ro-{i}" for i in range(4)]


async def _start(fleet: LocalFleet, target: str) -> FleetKV:
    for device in DEVICES:
        await fleet.add_device(device, "1.0.0")
    assert fleet.nc is not None
    kv = FleetKV(fleet.nc)

    async def all_online() -> bool:
        records = [await fleet.record(d) for d in DEVICES]
        return all(r is not None and r.online for r in records)

    await eventually(all_online, timeout=60, what="every device online")
    await fleet.publish(target)  # signed: the operator and the devices pin the fleet's root
    await (await kv.open(ROLLOUTS)).put(
        "r1",
        Rollout(
            name="r1",
            version=target,
            canary=Share(count=1),
            max_in_flight=Share(count=2),
            soak_s=0.0,
            spread_s=0.0,
            timeouts=LOCAL_TIMEOUTS,
            created_at=time.time(),
        ),
    )
    return kv


async def _ended(kv: FleetKV) -> RolloutPhase | None:
    status = await (await kv.open(ROLLOUT_STATUSES)).get("r1")
    if status is None or status.value.phase not in (RolloutPhase.DONE, RolloutPhase.HALTED):
        return None
    return status.value.phase


async def test_canary_then_waves_to_the_end(fleet: LocalFleet) -> None:
    kv = await _start(fleet, "2.0.0")
    phase = await eventually(lambda: _ended(kv), timeout=240, what="the rollout's end")
    assert phase is RolloutPhase.DONE
    for device in DEVICES:
        record = await fleet.record(device)
        assert record is not None and record.current_version == "2.0.0"


async def test_a_failing_canary_halts_and_touches_no_other_device(fleet: LocalFleet) -> None:
    kv = await _start(fleet, "2.1.0")  # its self-test fails
    phase = await eventually(lambda: _ended(kv), timeout=120, what="the rollout's end")
    assert phase is RolloutPhase.HALTED
    touched = [d for d in DEVICES if await (await kv.markers()).get(d) is not None]
    assert len(touched) == 1
    for device in DEVICES:
        record = await fleet.record(device)
        assert record is not None and record.current_version == "1.0.0"
