"""What every chaos scenario shares: the fleet, the faults, and the checks after them.

The fleet is a :class:`~harmony_fleet.testing.clusterfleet.ClusterFleet`: 3 NATS nodes on
loopback (every bucket with 3 replicas), two ``fleet operator`` processes (lease TTL 2 s),
:data:`DEVICES` supervised devices running real agent artifacts, all upgraded from 1.0.0 to
2.0.0 at once (a batch of markers). A fault is injected while the batch is in flight; then
every device must end Succeeded or correctly RolledBack, with exactly one agent process, its
status there, its upgrade committed at most once, and the registry agreeing with the device.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import NoKeysError

from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.health import stream_health
from harmony_fleet.contracts import UPGRADE_STATUS, AgentUpgradePhase, UpgradeMarker, subjects
from harmony_fleet.errors import TemporaryError
from harmony_fleet.testing.clusterfleet import ClusterFleet
from tests.helpers import eventually

P = AgentUpgradePhase
#: Devices per scenario (``CHAOS_DEVICES`` overrides). 20 real agents: the five scenarios take
#: about 4 minutes on 2 cores (each batch about 32 s).
DEVICES = int(os.environ.get("CHAOS_DEVICES", "20"))
TERMINAL = (P.SUCCEEDED, P.ROLLED_BACK)


@dataclass
class Batch:
    markers: dict[str, UpgradeMarker] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


async def start_devices(fleet: ClusterFleet) -> list[str]:
    names = [f"edge-{i:02d}" for i in range(1, DEVICES + 1)]
    for name in names:
        await fleet.add_device(name, "1.0.0")
    for name in names:
        await eventually(lambda n=name: fleet.record(n), timeout=120, what=f"{name} registered")
    return names


async def upgrade_all(fleet: ClusterFleet, names: list[str]) -> Batch:
    batch = Batch()
    for name in names:
        batch.markers[name] = await fleet.request_upgrade(name, "2.0.0")
    return batch


async def phases(fleet: ClusterFleet, batch: Batch) -> dict[str, P | None]:
    """Each device's phase of its batch upgrade (None: another upgrade, or not readable right
    now: the test's own reads ride through the fault like any client, by trying again)."""
    out: dict[str, P | None] = {}
    for name, marker in batch.markers.items():
        try:
            status = await fleet.status(name)
        except TemporaryError:
            out[name] = None
            continue
        ok = status is not None and status.upgrade_id == marker.upgrade_id
        out[name] = status.phase if ok and status is not None else None
    return out


async def some_device_at(fleet: ClusterFleet, batch: Batch, *wanted: P) -> bool:
    return any(p in wanted for p in (await phases(fleet, batch)).values())


async def meta_leader(fleet: ClusterFleet) -> str:
    """The JetStream meta leader's server name (asked through the system account)."""
    assert fleet.cluster is not None
    auth = fleet.cluster.auth
    options = NatsOptions(
        servers=fleet.cluster.urls, creds_file=str(auth.sys_creds), tls_ca_file=str(auth.ca_file)
    )
    nc = await connect(options.with_name("chaos-sys"))
    try:
        msg = await nc.request("$SYS.REQ.SERVER.PING.JSZ", b"{}", timeout=5)
        return str(json.loads(msg.data)["data"]["meta_cluster"]["leader"])
    finally:
        await nc.close()


async def stream_leader(fleet: ClusterFleet, stream: str) -> str:
    assert fleet.nc is not None
    streams = {s.name: s for s in await stream_health(fleet.nc)}
    leader = streams[stream].leader
    assert leader is not None, f"{stream} has no leader"
    return leader


def node_index(server_name: str) -> int:
    return int(server_name.removeprefix("n")) - 1


async def settle(fleet: ClusterFleet, batch: Batch, timeout: float = 300) -> dict[str, P | None]:
    """Wait until every device's upgrade is terminal; return the phases."""

    async def done() -> dict[str, P | None] | None:
        seen = await phases(fleet, batch)
        return seen if all(p in TERMINAL for p in seen.values()) else None

    result: dict[str, P | None] = await eventually(
        done, timeout=timeout, interval=0.5, what="every upgrade Succeeded or RolledBack"
    )
    return result


async def check_outcome(fleet: ClusterFleet, batch: Batch, scenario: str) -> None:
    """The invariants after a scenario (the module docstring); prints what it measured."""
    ended = await settle(fleet, batch)
    took = time.monotonic() - batch.started
    succeeded = sum(p is P.SUCCEEDED for p in ended.values())
    print(f"chaos {scenario}: {succeeded}/{len(ended)} Succeeded, batch done in {took:.1f} s")
    assert fleet.nc is not None
    history = (await fleet.nc.jetstream().key_value(subjects.BUCKET_UPGRADE_STATUS)).history
    for name, phase in ended.items():
        expected = "2.0.0" if phase is P.SUCCEEDED else "1.0.0"
        await eventually(
            lambda n=name: len(fleet.agent_processes(n)) == 1,
            timeout=60, what=f"exactly one agent process for {name}",
        )  # fmt: skip
        assert fleet.devices[name].layout.current_version() == expected, name
        if phase is P.ROLLED_BACK:
            status = await fleet.status(name)
            assert status is not None and status.error_code, f"{name} rolled back without a reason"
        uid = batch.markers[name].upgrade_id
        entries = await _history(history, name)
        ours = [
            s for s in (UPGRADE_STATUS.decode(e.value or b"") for e in entries)
            if s.upgrade_id == uid
        ]  # fmt: skip
        committers = [s.instance_id for s in ours if s.phase is P.COMMITTED]
        assert not committers or committers.count(committers[0]) == 1, (name, committers)

        async def converged(n: str = name, v: str = expected, p: P | None = phase) -> bool:
            try:
                record = await fleet.record(n)
            except TemporaryError:
                return False
            return bool(
                record is not None
                and record.current_version == v
                and record.upgrade is not None
                and record.upgrade.phase is p
            )

        await eventually(converged, timeout=60, what=f"the registry agreeing on {name}")
    active = await fleet.active_operator()
    assert active is not None, "no operator holds the lease at the end"


async def _history(read: Callable[[str], Awaitable[list[Any]]], key: str) -> list[Any]:
    """``key``'s history; read again while it comes back empty or the read fails.

    Every device has written a status by now, so an empty history is a replica that is still
    catching up (a node just restarted may serve the watch's consumer) or a leader election,
    not an answer.
    """

    async def read_once() -> list[Any] | None:
        try:
            return await read(key) or None
        except (NoKeysError, NatsError, TemporaryError, TimeoutError):
            return None

    found: list[Any] = await eventually(
        read_once, timeout=60, interval=0.5, what=f"the status history of {key}"
    )
    return found


async def restart_when_gone(fleet: ClusterFleet, index: int) -> None:
    assert fleet.cluster is not None
    await asyncio.to_thread(fleet.cluster.restart, index)
