"""The simulator against a real control plane: a dev/test NATS server (TLS, credentials, sim
credentials allowed), the operator in this process with its rollout loop, and a
:class:`~harmony_fleet.sim.worker.SimWorker` holding a real ``sim`` credential."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
)
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import (
    DeviceProgress,
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
)
from harmony_fleet.contracts.upgrade import UpgradeTimeouts
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.core.upgrade.trust import SignedRelease, target_path
from harmony_fleet.operator.rollouts import RolloutLoop
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from harmony_fleet.sim.config import SimConfig
from harmony_fleet.sim.worker import SimWorker
from tests.helpers import eventually

OLD, NEW = "1.0.0", "2.0.0"


async def signed(version: str) -> SignedRelease | None:
    """The release lookup: ``NEW`` is signed (the signed path itself is tested with a real
    repository in tests/integration/rollout/test_signed_rollout.py and bench/rollout.py)."""
    if version != NEW:
        return None
    return SignedRelease(path=target_path(NEW), version=NEW, length=1000, sha256="cd" * 32)


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", dev=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim_options(dev_server: EmbeddedNats, tmp_path: Path) -> NatsOptions:
    creds = dev_server.issue("sim", "sim-tests", tmp_path / "sim.creds")
    return NatsOptions(
        servers=(dev_server.url,),
        creds_file=str(creds),
        tls_ca_file=str(dev_server.auth.ca_file),
        reconnect_wait_s=0.2,
    )


@pytest.fixture
async def admin(dev_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    nc = await connect(dev_server.client_options().with_name("test"))
    try:
        yield nc
    finally:
        await nc.close()


@dataclass
class Plane:
    """The operator (with its rollout loop) and the admin's view of the buckets."""

    operator: Operator
    kv: FleetKV
    loop: RolloutLoop

    async def create(self, name: str, **fields: object) -> Rollout:
        spec: dict[str, object] = {
            "name": name,
            "version": NEW,
            "created_at": time.time(),
            "soak_s": 0.0,
            "spread_s": 0.0,
            "canary": Share(count=3),
            "max_in_flight": Share(count=20),
            "timeouts": UpgradeTimeouts(watch_s=0.5, cutover_s=3.0, hold_s=5.0),
        }
        spec.update(fields)
        rollout = Rollout(**spec)  # type: ignore[arg-type]
        await (await self.kv.open(ROLLOUTS)).put(name, rollout)
        return rollout

    async def edit(self, name: str, **fields: object) -> None:
        kv = await self.kv.open(ROLLOUTS)
        entry = await kv.get(name)
        assert entry is not None
        await kv.put(name, msgspec_replace(entry.value, **fields))

    async def status(self, name: str) -> RolloutStatus | None:
        entry = await (await self.kv.open(ROLLOUT_STATUSES)).get(name)
        return entry.value if entry is not None else None

    async def reaches(
        self, name: str, *phases: RolloutPhase, timeout: float = 60.0
    ) -> RolloutStatus:
        """Wait until rollout ``name`` is in one of ``phases``; its status then."""

        async def there() -> RolloutStatus | None:
            status = await self.status(name)
            return status if status is not None and status.phase in phases else None

        found: RolloutStatus = await eventually(
            there, timeout=timeout, interval=0.1, what=f"{name} in {phases}"
        )
        return found

    async def undo_failures(self, name: str) -> list[DeviceProgress]:
        """Rollout ``name``'s records whose undo did not succeed (for assertion messages)."""
        kv = await self.kv.open(ROLLOUT_PROGRESS)
        return [
            e.value
            for e in await kv.snapshot()
            if isinstance(e, Entry)
            and e.value.rollout == name
            and e.value.undo is not None
            and e.value.undo is not DeviceState.SUCCEEDED
        ]

    async def markers(self) -> dict[str, str]:
        """Every device's marker: device -> target version."""
        kv = await self.kv.markers()
        found = {}
        for key in await kv.keys():
            entry = await kv.get(key)
            if entry is not None:
                found[key] = str(entry.value.target_version)
        return found

    async def registered(self, count: int, *, online: int | None = None) -> None:
        """Wait until the operator's registry holds ``count`` devices, ``online`` of them
        online (all by default)."""
        want = count if online is None else online
        registry = self.operator.registry

        def seen() -> bool:
            return len(registry.devices) == count and (
                sum(d.online for d in registry.devices.values()) == want
            )

        await eventually(seen, timeout=30, what=f"{count} devices, {want} online")


def msgspec_replace(rollout: Rollout, **fields: object) -> Rollout:

    return msgspec.structs.replace(rollout, **fields)


@pytest.fixture
async def plane(dev_server: EmbeddedNats, admin: NatsClient) -> AsyncIterator[Plane]:
    loop = RolloutLoop(min_gap_s=0.2, idle_s=1.0, releases=signed)
    operator = Operator(
        OperatorConfig(
            nats=dev_server.client_options(reconnect_wait_s=0.2),
            flush_interval_s=0.1,
            presence=PresencePolicy(refresh_s=1.0),
            # The operator shares this event loop with the simulator and the test: a generous
            # lease (test-only) keeps a loaded machine's late renewal from deposing it.
            lease_ttl_s=60.0,
        ),
        extensions=[loop],
    )
    task = asyncio.ensure_future(operator.run())
    try:
        await asyncio.wait_for(operator.ready.wait(), 15)
        yield Plane(operator, FleetKV(admin), loop)
    finally:
        operator.stop.set()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def simulating(config: SimConfig, options: NatsOptions) -> AsyncIterator[SimWorker]:
    """A simulator worker running in this event loop for the block."""
    worker = SimWorker(config, options)
    stop = asyncio.Event()
    task = asyncio.ensure_future(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), 15)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
