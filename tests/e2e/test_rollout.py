"""Rollouts with real agents and a real operator process (its `RolloutLoop` drives them).

Canaries then waves to the end with a good version; with a version whose self-test fails, a
halt on the canary with no other device touched; a halt in the middle of the waves; undo; an
offline device picked up when it returns; the operator SIGKILLed and restarted mid-rollout with
no marker written twice; pause and resume; a maintenance window opening in real time. A handful
of devices each (the simulator covers hundreds: docs/rollouts.md).
"""

from __future__ import annotations

import datetime
import time

import pytest

from harmony_fleet.adapters.nats.fleet_kv import ARTIFACTS, ROLLOUTS
from harmony_fleet.contracts import (
    DeviceState,
    ErrorCode,
    MaintenanceWindow,
    RolloutPhase,
    Share,
)
from harmony_fleet.contracts.upgrade import ArtifactSource
from harmony_fleet.core.rollout.fleet import upgrade_id_for
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.rollout_support import (
    NAME,
    create,
    lever,
    marker_writes,
    markers,
    names,
    online,
    reached,
    status,
    versions,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

P = RolloutPhase
S = DeviceState


async def test_canary_then_waves_to_the_end(fleet: LocalFleet) -> None:
    devices = names("ro", 4)
    await online(fleet, devices)
    kv = await create(fleet, "2.0.0")  # each device Succeeded once its 1 s watch passed
    final = await reached(kv, P.DONE, P.HALTED)
    assert final.phase is P.DONE
    assert await versions(fleet, devices) == dict.fromkeys(devices, "2.0.0")


async def test_a_failing_canary_halts_and_touches_no_other_device(fleet: LocalFleet) -> None:
    devices = names("ro", 4)
    await online(fleet, devices)
    kv = await create(fleet, "2.1.0")  # its self-test fails
    final = await reached(kv, P.DONE, P.HALTED, timeout=120)
    assert final.phase is P.HALTED
    assert len(await markers(kv, devices)) == 1
    assert await versions(fleet, devices) == dict.fromkeys(devices, "1.0.0")


async def test_a_wave_failing_mid_rollout_halts_before_the_next_wave(
    fleet: LocalFleet,
) -> None:
    """The canary succeeds; then the artifact in the store is replaced (a compromised store):
    the first wave's devices refuse it, the rollout halts by itself, naming them, and the
    devices of the next wave are never touched."""
    devices = names("mid", 5)
    await online(fleet, devices)
    kv = await create(fleet, "2.0.0", soak_s=4.0)
    await reached(kv, P.SOAKING)
    release = await fleet.publish("2.0.0")
    assert fleet.nc is not None
    store = await fleet.nc.jetstream().object_store(ARTIFACTS.name)
    await store.put(release.object_name, b"not the signed bytes")

    halted = await reached(kv, P.HALTED, P.DONE)
    assert halted.phase is P.HALTED and halted.wave == 1, halted
    wave = sorted(d.device_id for d in halted.halted_devices)
    assert len(wave) == 2 and {d.reason for d in halted.halted_devices} == {
        ErrorCode.UNTRUSTED.value
    }
    marked = await markers(kv, devices)
    (canary,) = set(marked) - set(wave)
    untouched = set(devices) - set(marked)
    assert len(untouched) == 2, "the next wave's devices got no marker"
    now = await versions(fleet, devices)
    assert now[canary] == "2.0.0"
    assert all(now[d] == "1.0.0" for d in [*wave, *untouched])


async def test_undo_returns_every_upgraded_device_to_the_version_it_ran(
    fleet: LocalFleet,
) -> None:
    devices = names("undo", 3)
    await online(fleet, devices)
    kv = await create(fleet, "2.0.0", max_in_flight=Share(count=3))
    await reached(kv, P.DONE)
    assert await versions(fleet, devices) == dict.fromkeys(devices, "2.0.0")

    await lever(kv, undo_requested=True)
    undone = await reached(kv, P.UNDONE)
    assert undone.undo_counts == {S.SUCCEEDED: 3}
    for device in devices:  # back through the kept version: nothing downloaded
        entry = await (await kv.markers()).get(device)
        assert entry is not None and entry.value.source is ArtifactSource.INSTALLED
        assert entry.value.target_version == "1.0.0"
    assert await versions(fleet, devices) == dict.fromkeys(devices, "1.0.0")


async def test_an_offline_device_is_pending_then_picked_up_when_it_returns(
    fleet: LocalFleet,
) -> None:
    devices = names("off", 3)
    await online(fleet, devices)
    away = fleet.devices[devices[2]]
    await away.stop()

    async def gone() -> bool:
        record = await fleet.record(devices[2])
        return record is not None and not record.online

    await eventually(gone, timeout=30, what="the stopped device offline")
    kv = await create(fleet, "2.0.0", max_in_flight=Share(count=1))

    async def others_done() -> bool:
        found = await status(kv)
        return found is not None and found.counts == {S.SUCCEEDED: 2, S.PENDING: 1}

    await eventually(others_done, timeout=90, interval=0.05, what="two done, one pending")
    assert (await status(kv)).phase is P.WAVES, "not done: a device is missing"  # type: ignore[union-attr]
    assert devices[2] not in await markers(kv, devices)

    await away.start()
    final = await reached(kv, P.DONE)
    assert final.counts == {S.SUCCEEDED: 3}
    assert await versions(fleet, devices) == dict.fromkeys(devices, "2.0.0")


async def test_the_operator_killed_mid_rollout_goes_on_with_no_marker_written_twice(
    fleet: LocalFleet,
) -> None:
    devices = names("kill", 4)
    await online(fleet, devices)
    async with marker_writes(fleet) as writes:
        kv = await create(fleet, "2.0.0")

        async def wave_started() -> bool:
            found = await status(kv)
            return found is not None and found.wave == 1 and len(await markers(kv, devices)) > 1

        await eventually(wave_started, timeout=90, interval=0.05, what="the first wave started")
        await fleet.stop_operator(kill=True)  # SIGKILL, in the middle of the wave
        await fleet.start_operator()
        final = await reached(kv, P.DONE, P.HALTED)
    assert final.phase is P.DONE
    assert await versions(fleet, devices) == dict.fromkeys(devices, "2.0.0")
    assert sorted(writes) == sorted(devices)
    spec = await (await kv.open(ROLLOUTS)).get(NAME)
    assert spec is not None
    for device, ids in writes.items():
        assert ids == [upgrade_id_for(spec.value, device)], f"{device}: marker writes {ids}"


async def test_pause_starts_nobody_new_and_resume_goes_on(fleet: LocalFleet) -> None:
    devices = names("pause", 3)
    await online(fleet, devices)
    kv = await create(fleet, "2.0.0")
    await eventually(
        lambda: markers(kv, devices), timeout=60, interval=0.05, what="the canary's marker"
    )
    await lever(kv, paused=True)
    paused = await reached(kv, P.PAUSED)
    assert paused.paused_from is P.CANARY

    async def canary_done_while_paused() -> bool:
        found = await status(kv)
        return found is not None and found.phase is P.PAUSED and found.counts.get(S.SUCCEEDED) == 1

    # the engine saw the canary succeed while paused, and still started nobody
    await eventually(canary_done_while_paused, timeout=90, interval=0.05, what="canary done")
    assert len(await markers(kv, devices)) == 1

    await lever(kv, paused=False)
    final = await reached(kv, P.DONE, P.HALTED)
    assert final.phase is P.DONE
    assert await versions(fleet, devices) == dict.fromkeys(devices, "2.0.0")


async def test_a_maintenance_window_opening_seconds_from_now_is_waited_for(
    fleet: LocalFleet,
) -> None:
    """Windows have minutes: this one opens at the next minute that is at least 3 s away, so
    the rollout is seen waiting before it, and nothing starts until it opened."""
    devices = names("win", 2)
    await online(fleet, devices)
    now = datetime.datetime.now(tz=datetime.UTC)
    opens = (now + datetime.timedelta(seconds=3)).replace(second=0, microsecond=0)
    opens += datetime.timedelta(minutes=1)
    closes = opens + datetime.timedelta(minutes=5)
    window = MaintenanceWindow(
        days=list(range(7)),
        start=opens.strftime("%H:%M"),
        end=closes.strftime("%H:%M"),
        time_zone="UTC",
    )
    async with marker_writes(fleet) as writes:
        kv = await create(fleet, "2.0.0", windows=[window], max_in_flight=Share(count=2))

        async def seen_waiting() -> bool:
            found = await status(kv)
            return found is not None and found.counts == {S.PENDING: 2}

        await eventually(seen_waiting, timeout=30, interval=0.05, what="waiting for the window")
        assert time.time() < opens.timestamp(), "the pass before the window started nobody"
        assert not writes

        first = await eventually(
            lambda: markers(kv, devices), timeout=90, interval=0.05, what="the first start"
        )
    for device in first:
        entry = await (await kv.markers()).get(device)
        assert entry is not None and entry.value.requested_at >= opens.timestamp()
