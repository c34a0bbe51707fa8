"""Rollouts of hundreds of simulated devices through the real operator (docs/sim.md): the
devices speak the real protocol over real NATS with a real ``sim`` credential, the operator
admits them by its identity, coordinates their commits and drives the rollout from memory."""

from __future__ import annotations

from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.contracts import Share
from harmony_fleet.contracts.rollout import DeviceState, RolloutPhase
from harmony_fleet.sim.config import Fault, SimConfig
from harmony_fleet.sim.worker import SimWorker
from tests.helpers import eventually
from tests.sim.conftest import NEW, OLD, Plane, simulating

DEVICES = 200


def fleet(**fields: object) -> SimConfig:
    spec: dict[str, object] = {
        "devices": DEVICES,
        "upgrade_time_s": (0.2, 0.5),
        # A device silent for 3 intervals is offline: 1 s keeps a loaded machine's scheduling
        # delays from looking like lost heartbeats (``heartbeat_lost_after_commit``).
        "heartbeat_s": 1.0,
        "labels": (),
    }
    spec.update(fields)
    return SimConfig(**spec)  # type: ignore[arg-type]


def versions(sim: SimWorker) -> dict[str, int]:
    out: dict[str, int] = {}
    for device in sim.devices.values():
        out[device.version] = out.get(device.version, 0) + 1
    return out


def idle(sim: SimWorker) -> bool:
    return not any(s.task and not s.task.done() for s in sim.devices.values())


def started(sim: SimWorker) -> set[str]:
    """The devices that ever took a marker (the simulator's record, not the operator's)."""
    return {d for d, s in sim.devices.items() if s.finished}


async def test_canaries_then_waves_to_done_then_undo(
    plane: Plane, sim_options: NatsOptions
) -> None:
    async with simulating(fleet(), sim_options) as sim:
        await plane.registered(DEVICES)
        await plane.create("spring", canary=Share(count=4), max_in_flight=Share(count=50))
        done = await plane.reaches("spring", RolloutPhase.DONE)
        assert done.counts == {"succeeded": DEVICES}
        assert done.wave == 4, "canaries, then ceil(196 / 50) = 4 waves"
        assert versions(sim) == {NEW: DEVICES}

        await plane.edit("spring", undo_requested=True)
        undone = await plane.reaches("spring", RolloutPhase.UNDONE)
        assert undone.undo_counts == {"succeeded": DEVICES}, await plane.undo_failures("spring")
        assert versions(sim) == {OLD: DEVICES}, "every device back on the version it ran"


async def test_a_bad_canary_halts_and_no_device_beyond_the_canaries_is_touched(
    plane: Plane, sim_options: NatsOptions
) -> None:
    config = fleet(faults={Fault.SELF_TEST: Share(percent=50.0)}, seed=7)
    async with simulating(config, sim_options) as sim:
        await plane.registered(DEVICES)
        await plane.create("bad", canary=Share(count=10), max_in_flight=Share(count=50))
        halted = await plane.reaches("bad", RolloutPhase.HALTED)
        assert "canary" in halted.halt_reason
        assert {o.reason for o in halted.halted_devices} == {"self_test_failed"}
        await eventually(
            lambda: not any(s.task and not s.task.done() for s in sim.devices.values())
        )
        markers = await plane.markers()
        assert len(markers) <= 10, "markers for the canaries only"
        assert started(sim) == set(markers), "no device beyond the canaries took a marker"
        assert versions(sim).get(OLD, 0) >= DEVICES - 10


async def test_a_wave_that_fails_halts_mid_rollout(plane: Plane, sim_options: NatsOptions) -> None:
    config = fleet(faults={Fault.CRASH_AFTER_COMMIT: Share(percent=30.0)}, seed=2)
    async with simulating(config, sim_options) as sim:
        await plane.registered(DEVICES)
        await plane.create("midway", canary=Share(count=0), max_in_flight=Share(count=50))
        halted = await plane.reaches("midway", RolloutPhase.HALTED)
        assert halted.wave == 1, "halted in the first wave"
        assert {o.reason for o in halted.halted_devices} == {"post_commit"}
        await eventually(
            lambda: not any(s.task and not s.task.done() for s in sim.devices.values())
        )
        assert len(started(sim)) == 50, "the wave in hand finished, nothing more started"
        assert len(await plane.markers()) == 50


async def test_offline_devices_wait_and_are_picked_up_when_they_return(
    plane: Plane, sim_options: NatsOptions
) -> None:
    async with simulating(fleet(), sim_options) as sim:
        away = sorted(sim.devices)[:20]
        await plane.registered(DEVICES)
        sim.set_away(away)
        await plane.registered(DEVICES, online=DEVICES - 20)
        await plane.create("later", canary=Share(count=3), max_in_flight=Share(count=60))

        def rest_upgraded() -> bool:
            return all(s.version == NEW for d, s in sim.devices.items() if d not in away)

        await eventually(rest_upgraded, timeout=60, what="every online device upgraded")
        status = await plane.status("later")
        assert status is not None and status.phase is not RolloutPhase.DONE
        assert status.counts.get(DeviceState.PENDING) == 20, "offline: pending, not failed"
        assert all(sim.devices[d].version == OLD for d in away)

        sim.set_back(away)
        done = await plane.reaches("later", RolloutPhase.DONE)
        assert done.counts == {"succeeded": DEVICES}
        assert versions(sim) == {NEW: DEVICES}


async def test_pause_starts_nothing_and_resume_goes_on(
    plane: Plane, sim_options: NatsOptions
) -> None:
    config = fleet(upgrade_time_s=(1.0, 1.5))
    async with simulating(config, sim_options) as sim:
        await plane.registered(DEVICES)
        await plane.create("calm", canary=Share(count=0), max_in_flight=Share(count=40))
        await eventually(lambda: len(started(sim)) >= 40, timeout=30, what="the first wave")
        await plane.edit("calm", paused=True)
        await plane.reaches("calm", RolloutPhase.PAUSED)
        await eventually(
            lambda: not any(s.task and not s.task.done() for s in sim.devices.values())
        )
        touched = started(sim)
        passes = plane.loop.passes
        await eventually(
            lambda: plane.loop.passes >= passes + 3, timeout=20, what="passes while paused"
        )
        assert started(sim) == touched, "a paused rollout starts nothing"
        assert len(touched) < DEVICES

        await plane.edit("calm", paused=False)
        done = await plane.reaches("calm", RolloutPhase.DONE)
        assert done.counts == {"succeeded": DEVICES}
