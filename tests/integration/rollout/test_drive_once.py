"""A rollout driven through real NATS: the engine's plans performed against real buckets.

The devices here are their KV records (the registry, as the operator writes it, and the
upgrade status, as an agent writes it): what a pass of the driver reads. Real agents and the
simulator come with the operator wiring (docs/rollouts.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
)
from harmony_fleet.adapters.nats.kv import TypedKV
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceRecord,
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
    UpgradeStatus,
    new_instance_id,
)
from harmony_fleet.contracts.rollout import progress_key
from harmony_fleet.contracts.upgrade import ArtifactSource
from harmony_fleet.core.upgrade.trust import SignedRelease, target_path
from harmony_fleet.operator.rollouts import RolloutLoop, drive_once

OLD, NEW = "1.0.0", "2.0.0"
SHA_NEW, SHA_OLD = "bb" * 32, "aa" * 32
DEVICES = [f"edge-{i:02d}" for i in range(8)]


async def signed(version: str) -> SignedRelease | None:
    """The driver's release lookup (the signed metadata; test_signed_rollout.py runs the real
    one): NEW is signed, nothing else is."""
    if version != NEW:
        return None
    return SignedRelease(path=target_path(NEW), version=NEW, length=10, sha256=SHA_NEW)


async def _setup(kv: FleetKV, now: float, **spec: object) -> None:
    for i, device in enumerate(DEVICES):
        await (await kv.devices()).put(
            device,
            DeviceRecord(
                device_id=device,
                current_version=OLD,
                online=True,
                first_seen=now,
                last_seen=now,
                labels={"arch": ["arm64", "amd64"][i % 2]},
            ),
        )
    fields = {
        "name": "spring",
        "version": NEW,
        "created_at": now,
        "soak_s": 0.0,
        "spread_s": 0.0,
        "canary": Share(count=2),
        "max_in_flight": Share(count=3),
    }
    fields.update(spec)
    await (await kv.open(ROLLOUTS)).put(str(fields["name"]), Rollout(**fields))  # type: ignore[arg-type]


async def _device_reports(kv: FleetKV, device: str, phase: AgentUpgradePhase, now: float) -> None:
    """What the device's agent would write after the marker: its status, and for a success the
    registry's new version (the operator's view of its heartbeat)."""
    marker = await (await kv.markers()).get(device)
    assert marker is not None
    m = marker.value
    await (await kv.statuses()).put(
        device,
        UpgradeStatus(
            upgrade_id=m.upgrade_id,
            device_id=device,
            phase=phase,
            from_version=OLD if m.target_version == NEW else NEW,
            to_version=m.target_version,
            instance_id=new_instance_id(),
            started_at=now,
            updated_at=now,
            error_code="" if phase is AgentUpgradePhase.SUCCEEDED else "post_commit",
            previous_version=OLD if m.target_version == NEW else None,
            previous_sha256=SHA_OLD if m.target_version == NEW else None,
        ),
    )
    if phase is AgentUpgradePhase.SUCCEEDED:
        record = await (await kv.devices()).get(device)
        assert record is not None
        await (await kv.devices()).put(
            device, msgspec.structs.replace(record.value, current_version=m.target_version)
        )


async def _marked(kv: FleetKV) -> dict[str, str]:
    found = {}
    for device in DEVICES:
        entry = await (await kv.markers()).get(device)
        if entry is not None:
            found[device] = entry.value.upgrade_id
    return found


async def test_canaries_then_waves_then_done_then_undo(nc: NatsClient) -> None:
    kv = FleetKV(nc)
    now = time.time()
    await _setup(kv, now)
    first = await drive_once(kv, "spring", now=now, releases=signed)
    canaries = sorted(s.device_id for s in first.starts)
    assert len(canaries) == 2 and await _marked(kv) == {
        s.device_id: s.upgrade_id for s in first.starts
    }
    again = await drive_once(
        kv, "spring", now=now + 1, releases=signed
    )  # a replay starts nothing new
    assert again.starts == () and set(await _marked(kv)) == set(canaries)

    for _ in range(10):
        for device, _uid in (await _marked(kv)).items():
            status = await (await kv.statuses()).get(device)
            if status is None:
                await _device_reports(kv, device, AgentUpgradePhase.SUCCEEDED, now)
        result = await drive_once(kv, "spring", now=now + 2, releases=signed)
        if result.finished:
            break
    assert result.status.phase is RolloutPhase.DONE
    assert result.status.counts == {DeviceState.SUCCEEDED: len(DEVICES)}
    stored = await (await kv.open(ROLLOUT_PROGRESS)).get(progress_key("spring", DEVICES[0]))
    assert stored is not None and stored.value.previous_version == OLD

    spec = await (await kv.open(ROLLOUTS)).get("spring")
    assert spec is not None
    await (await kv.open(ROLLOUTS)).put(
        "spring", msgspec.structs.replace(spec.value, undo_requested=True)
    )
    undo = await drive_once(kv, "spring", now=now + 3, releases=signed)
    assert len(undo.starts) == 3 and all(s.undo for s in undo.starts)
    marker = await (await kv.markers()).get(undo.starts[0].device_id)
    assert marker is not None
    assert marker.value.source is ArtifactSource.INSTALLED
    assert (marker.value.target_version, marker.value.sha256) == (OLD, SHA_OLD)


async def test_a_failing_canary_halts_and_no_other_device_gets_a_marker(nc: NatsClient) -> None:
    kv = FleetKV(nc)
    now = time.time()
    await _setup(kv, now)
    first = await drive_once(kv, "spring", now=now, releases=signed)
    bad, good = sorted(s.device_id for s in first.starts)
    await _device_reports(kv, bad, AgentUpgradePhase.ROLLED_BACK, now)
    await _device_reports(kv, good, AgentUpgradePhase.SUCCEEDED, now)
    result = await drive_once(kv, "spring", now=now + 1, releases=signed)
    assert result.status.phase is RolloutPhase.HALTED
    assert [d.device_id for d in result.status.halted_devices] == [bad]
    for _ in range(3):
        assert (await drive_once(kv, "spring", now=now + 2, releases=signed)).starts == ()
    assert set(await _marked(kv)) == {bad, good}


async def _devices_obey(kv: FleetKV, stop: asyncio.Event) -> None:
    """The devices: each reports Succeeded once its marker came (polled, as a device follows)."""
    while not stop.is_set():
        for device in await _marked(kv):
            if await (await kv.statuses()).get(device) is None:
                await _device_reports(kv, device, AgentUpgradePhase.SUCCEEDED, time.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def test_the_loop_drives_every_rollout_until_it_stops(nc: NatsClient) -> None:
    kv = FleetKV(nc)
    await _setup(kv, time.time())
    stop = asyncio.Event()
    tasks = [
        asyncio.ensure_future(RolloutLoop(every_s=0.05).run(kv, stop, signed)),
        asyncio.ensure_future(_devices_obey(kv, stop)),
    ]
    statuses = await kv.open(ROLLOUT_STATUSES)

    async def done() -> bool:
        status = await statuses.get("spring")
        return status is not None and status.value.phase is RolloutPhase.DONE

    try:
        await eventually(done, timeout=20, what="the rollout done")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for device in DEVICES:
        record = await (await kv.devices()).get(device)
        assert record is not None and record.value.current_version == NEW


async def test_a_new_loop_after_a_stop_goes_on_without_writing_any_marker_twice(
    nc: NatsClient,
) -> None:
    """The operator killed mid-rollout and started again: its state is all in KV."""
    kv = FleetKV(nc)
    await _setup(kv, time.time())
    written: dict[str, list[str]] = {}

    async def count(msg: object) -> None:
        key = msg.subject.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
        written.setdefault(key, []).append(msg.data.decode())  # type: ignore[attr-defined]

    sub = await nc.subscribe("$KV.fleet_upgrade_marker.>", cb=count)
    statuses = await kv.open(ROLLOUT_STATUSES)
    stop = asyncio.Event()
    first = asyncio.ensure_future(RolloutLoop(every_s=0.05).run(kv, stop, signed))
    await eventually(lambda: len(written) >= 2, what="the canaries' markers")
    stop.set()
    await asyncio.wait_for(first, 10)  # the first operator is gone, canaries still upgrading

    stop = asyncio.Event()
    tasks = [
        asyncio.ensure_future(RolloutLoop(every_s=0.05).run(kv, stop, signed)),
        asyncio.ensure_future(_devices_obey(kv, stop)),
    ]
    try:
        await eventually(lambda: _is_done(statuses), timeout=20, what="the rollout done")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await sub.unsubscribe()
    assert sorted(written) == sorted(DEVICES)
    assert all(len(values) == 1 for values in written.values()), written


async def _is_done(statuses: TypedKV[RolloutStatus]) -> bool:
    status = await statuses.get("spring")
    return status is not None and status.value.phase is RolloutPhase.DONE
