"""Rollouts of hundreds of simulated devices through the real operator (docs/sim.md)."""

from __future__ import annotations

from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.contracts import RolloutPhase, Share
from harmony_fleet.sim.config import SimConfig
from tests.helpers import eventually
from tests.sim.conftest import NEW, Plane, simulating


async def test_canaries_then_waves_to_done(plane: Plane, sim_options: NatsOptions) -> None:
    config = SimConfig(devices=200, upgrade_time_s=(0.3, 0.6), heartbeat_s=0.5)
    async with simulating(config, sim_options) as sim:
        await eventually(
            lambda: len(plane.operator.registry.devices) == 200, timeout=20, what="registry"
        )
        await plane.create(
            "spring",
            max_in_flight=Share(count=50),
        )

        async def done() -> bool:
            status = await plane.status("spring")
            return status is not None and status.phase is RolloutPhase.DONE

        await eventually(done, timeout=60, interval=0.2, what="the rollout done")
        assert all(d.version == NEW for d in sim.devices.values())
