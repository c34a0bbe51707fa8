"""The rollout buckets: admin and operator write, a viewer reads, a device can do nothing.

A device that could write a rollout could start one on the whole fleet, or clear a halt; one
that could write its own progress record could mark itself succeeded and push the rollout past
its canaries. Each refusal has a control beside it (the same move by a role that may).
"""

from __future__ import annotations

import time
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
)
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import (
    DeviceProgress,
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    encode,
)
from harmony_fleet.contracts.rollout import progress_key
from tests.security.support import Attacker, attacker


def _values() -> dict[str, tuple[str, bytes]]:
    now = time.time()
    return {
        ROLLOUTS.name: ("evil", encode(Rollout(name="evil", version="6.6.6", created_at=now))),
        ROLLOUT_STATUSES.name: (
            "spring",
            encode(RolloutStatus(name="spring", phase=RolloutPhase.DONE)),
        ),
        ROLLOUT_PROGRESS.name: (
            progress_key("spring", "edge-a"),
            encode(
                DeviceProgress(
                    rollout="spring", device_id="edge-a", state=DeviceState.SUCCEEDED, wave=0
                )
            ),
        ),
    }


async def _seed(nc: NatsClient) -> None:
    kv = FleetKV(nc)
    await (await kv.open(ROLLOUTS)).put(
        "spring", Rollout(name="spring", version="2.0.0", created_at=time.time())
    )
    await (await kv.open(ROLLOUT_STATUSES)).put("spring", RolloutStatus(name="spring"))


async def test_a_device_can_neither_write_nor_read_any_rollout_bucket(
    device_a: Attacker, nc: NatsClient
) -> None:
    await _seed(nc)
    for bucket, (key, body) in _values().items():
        subject = f"$KV.{bucket}.{key}"
        await device_a.nc.publish(subject, body)
        await device_a.refused(subject, what=f"a device writing {bucket}")
        get = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.spring"
        await device_a.nc.publish(get, b"")
        await device_a.refused(get, what=f"a device reading {bucket}")
    kv = FleetKV(nc)
    assert await (await kv.open(ROLLOUTS)).get("evil") is None
    status = await (await kv.open(ROLLOUT_STATUSES)).get("spring")
    assert status is not None and status.value.phase is RolloutPhase.CANARY
    assert await (await kv.open(ROLLOUT_PROGRESS)).get(progress_key("spring", "edge-a")) is None


async def test_the_viewer_reads_the_rollouts_but_writes_none(
    nats_server: EmbeddedNats, creds: dict[str, Path], nc: NatsClient
) -> None:
    await _seed(nc)
    viewer = await attacker(nats_server, creds["viewer"])
    try:
        seen = await (await FleetKV(viewer.nc).open(ROLLOUTS)).get("spring")
        assert seen is not None and seen.value.version == "2.0.0", "the control: a viewer reads"
        for bucket, (key, body) in _values().items():
            subject = f"$KV.{bucket}.{key}"
            await viewer.nc.publish(subject, body)
            await viewer.refused(subject, what=f"a viewer writing {bucket}")
    finally:
        await viewer.close()
    assert await (await FleetKV(nc).open(ROLLOUTS)).get("evil") is None


async def test_the_operator_writes_every_rollout_bucket(
    nats_server: EmbeddedNats, creds: dict[str, Path]
) -> None:
    operator = await attacker(nats_server, creds["operator"])
    try:
        js = operator.nc.jetstream()
        for bucket, (key, body) in _values().items():
            ack = await js.publish(f"$KV.{bucket}.{key}", body, timeout=5)
            assert ack.seq > 0, bucket
        assert operator.errors == []
    finally:
        await operator.close()
