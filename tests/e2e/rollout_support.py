"""Helpers for the rollout scenarios with real agents and the real operator process."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec

from harmony_fleet.adapters.nats.fleet_kv import MARKERS, ROLLOUT_STATUSES, ROLLOUTS, FleetKV
from harmony_fleet.contracts import Rollout, RolloutPhase, RolloutStatus, Share, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LocalFleet
from tests.helpers import eventually

NAME = "r1"
#: A one-second post-commit watch: a device counts as succeeded a second after its commit.
TIMEOUTS = UpgradeTimeouts(self_test_s=30, cutover_s=15, hold_s=30, watch_s=1)


async def online(fleet: LocalFleet, devices: list[str], version: str = "1.0.0") -> None:
    """Start ``devices`` on ``version`` and wait until the registry shows each online."""
    for device in devices:
        await fleet.add_device(device, version)

    async def all_online() -> bool:
        records = [await fleet.record(d) for d in devices]
        return all(r is not None and r.online and r.current_version == version for r in records)

    await eventually(all_online, timeout=60, what="every device online")


async def create(fleet: LocalFleet, version: str, **spec: Any) -> FleetKV:
    """Publish ``version`` (signed) and create rollout :data:`NAME` of it, as
    ``fleet rollout create`` does (canary 1, max-in-flight 2, no soak, no spread by default)."""
    await fleet.publish(version)
    assert fleet.nc is not None
    kv = FleetKV(fleet.nc)
    fields: dict[str, Any] = {
        "name": NAME,
        "version": version,
        "canary": Share(count=1),
        "max_in_flight": Share(count=2),
        "soak_s": 0.0,
        "spread_s": 0.0,
        "timeouts": TIMEOUTS,
        "created_at": time.time(),
    }
    fields.update(spec)
    await (await kv.open(ROLLOUTS)).create(NAME, msgspec.convert(fields, Rollout))
    return kv


async def status(kv: FleetKV) -> RolloutStatus | None:
    entry = await (await kv.open(ROLLOUT_STATUSES)).get(NAME)
    return entry.value if entry is not None else None


async def reached(kv: FleetKV, *phases: RolloutPhase, timeout: float = 90) -> RolloutStatus:
    """Wait until the rollout's status is in one of ``phases``."""

    async def check() -> RolloutStatus | None:
        found = await status(kv)
        return found if found is not None and found.phase in phases else None

    what = f"rollout in {'/'.join(p.value for p in phases)}"
    result: RolloutStatus = await eventually(check, timeout=timeout, interval=0.05, what=what)
    return result


async def lever(kv: FleetKV, **changes: bool) -> None:
    """``fleet rollout pause|resume|abort|undo``: a compare-and-set on the rollout."""
    specs = await kv.open(ROLLOUTS)
    entry = await specs.get(NAME)
    assert entry is not None
    await specs.update(NAME, msgspec.structs.replace(entry.value, **changes), last=entry.revision)


async def markers(kv: FleetKV, devices: list[str]) -> dict[str, str]:
    """device -> the upgrade id its marker holds (devices without one left out)."""
    found: dict[str, str] = {}
    for device in devices:
        entry = await (await kv.markers()).get(device)
        if entry is not None:
            found[device] = entry.value.upgrade_id
    return found


async def versions(fleet: LocalFleet, devices: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for device in devices:
        record = await fleet.record(device)
        out[device] = record.current_version if record is not None else None
    return out


@contextlib.asynccontextmanager
async def marker_writes(fleet: LocalFleet) -> Any:
    """Every write to the marker bucket while inside, as ``{device: [upgrade ids]}``: a KV put is
    a publish on ``$KV.<bucket>.<key>``, which a plain subscription sees too."""
    assert fleet.nc is not None
    seen: dict[str, list[str]] = {}
    codec = MARKERS.codec

    async def on(msg: Any) -> None:
        device = msg.subject.rsplit(".", 1)[-1]
        if msg.data:
            seen.setdefault(device, []).append(codec.decode(msg.data).upgrade_id)

    sub = await fleet.nc.subscribe(f"$KV.{MARKERS.name}.>", cb=on)
    try:
        yield seen
    finally:
        await fleet.nc.flush()
        await sub.unsubscribe()


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]
