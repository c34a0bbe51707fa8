"""The operator admits only devices that were issued credentials and not revoked, against the
real server of `fleet server` and a real operator holding the operator's credentials.

The only way to publish a heartbeat for a name never issued is with the admin's (or the
operator's) credentials: that is what the ghost here does. Device identities reach the operator
through the ``fleet_identities`` bucket, written where credentials are issued and revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import Heartbeat, Role, encode, new_instance_id, subjects
from harmony_fleet.contracts.identity import DeviceIdentity
from harmony_fleet.operator.runtime import Operator
from tests.helpers import eventually, run_fleet
from tests.security.support import attacker, tls_options


def beat(device: str, instance: str, seq: int) -> bytes:
    return encode(
        Heartbeat(
            device_id=device,
            instance_id=instance,
            agent_version="1.0.0",
            role=Role.MAIN,
            seq=seq,
            sent_at=time.time(),
            uptime_s=1.0,
            interval_s=0.2,
        )
    )


def listed() -> set[str]:
    done = run_fleet("devices", "--json")
    assert done.returncode == 0, done.stderr
    return {record["device_id"] for record in json.loads(done.stdout)}


async def identity(nc: NatsClient, device: str) -> DeviceIdentity | None:
    found = await (await FleetKV(nc).identities()).read(device)
    return found.value if isinstance(found, Entry) else None


async def test_a_device_never_issued_does_not_enter_and_a_revoked_one_leaves(
    nats_server: EmbeddedNats, creds: dict[str, Path], operator: Operator, nc: NatsClient
) -> None:
    a = await attacker(nats_server, creds["edge-a"], inbox_prefix=subjects.inbox_prefix("edge-a"))
    stop = asyncio.Event()
    a_instance, ghost_instance = new_instance_id(), new_instance_id()

    async def beating() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            with contextlib.suppress(Exception):
                await a.nc.publish(subjects.heartbeat("edge-a"), beat("edge-a", a_instance, seq))
            await nc.publish(subjects.heartbeat("ghost"), beat("ghost", ghost_instance, seq))
            await nc.publish(subjects.heartbeat("edge-b"), beat("edge-b", ghost_instance, seq))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    task = asyncio.ensure_future(beating())
    try:
        await eventually(
            lambda: "edge-a" in listed(), timeout=15, interval=0.2, what="edge-a listed"
        )
        registry = operator.registry
        await eventually(
            lambda: registry.security.counts["not_issued"] >= 3, what="the ghost counted"
        )
        shown = listed()
        assert "ghost" not in shown and "ghost" not in registry.devices
        # edge-b was issued credentials (and is live): the admin may still speak for it.
        assert "edge-b" in registry.devices

        await asyncio.to_thread(nats_server.revoke, "edge-a")
        got = await identity(nc, "edge-a")
        assert got is not None and got.revoked_at is not None
        await eventually(lambda: "edge-a" not in registry.devices, what="edge-a out")
        await eventually(
            lambda: "edge-a" not in listed(), timeout=10, interval=0.2, what="record gone"
        )
        # Its heartbeats, now only forgeable by the admin, no longer bring it back.
        before = registry.security.counts["not_issued"]
        await nc.publish(subjects.heartbeat("edge-a"), beat("edge-a", a_instance, 10_000))
        await eventually(lambda: registry.security.counts["not_issued"] > before, what="counted")
        assert "edge-a" not in registry.devices
    finally:
        stop.set()
        await task
        await a.close()


async def test_identities_follow_the_credentials_cli_and_catch_up_after_a_restart(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    store = str(nats_server.store_dir)
    out = tmp_path / "edge-c.creds"
    done = await asyncio.to_thread(
        run_fleet, "credentials", "issue", "--device", "edge-c", "--out", str(out),
        "--store-dir", store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    issued = await identity(nc, "edge-c")
    assert issued is not None and issued.live and len(issued.users) == 1
    # An operator or a viewer is no device: no identity.
    done = await asyncio.to_thread(
        run_fleet, "credentials", "issue", "--role", "viewer", "--name", "watcher",
        "--out", str(tmp_path / "watcher.creds"), "--store-dir", store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert await identity(nc, "watcher") is None

    done = await asyncio.to_thread(
        run_fleet, "credentials", "revoke", "--device", "edge-c", "--store-dir", store
    )
    assert done.returncode == 0, done.stderr
    revoked = await identity(nc, "edge-c")
    assert revoked is not None and not revoked.live

    # Issued while the server is down: written at its next start, as revocations are applied.
    await nc.close()
    nats_server.stop()
    nats_server.issue("device", "edge-d", tmp_path / "edge-d.creds")
    nats_server.start()
    admin = await connect(nats_server.client_options())
    try:
        late = await identity(admin, "edge-d")
        assert late is not None and late.live
    finally:
        await admin.close()


async def test_devices_cannot_read_or_write_identities_and_the_operator_cannot_write_them(
    nats_server: EmbeddedNats, creds: dict[str, Path]
) -> None:
    forged = encode(DeviceIdentity(device_id="ghost", users=[], issued_at=time.time()))
    bucket = "$KV.fleet_identities"
    a = await attacker(nats_server, creds["edge-a"], inbox_prefix=subjects.inbox_prefix("edge-a"))
    op = await attacker(nats_server, creds["operator"])
    try:
        await a.nc.publish(f"{bucket}.ghost", forged)
        await a.refused(f"{bucket}.ghost")
        await a.nc.publish(
            "$JS.API.DIRECT.GET.KV_fleet_identities.$KV.fleet_identities.edge-a", b""
        )
        await a.refused("$JS.API.DIRECT.GET.KV_fleet_identities")
        await op.nc.publish(f"{bucket}.ghost", forged)
        await op.refused(f"{bucket}.ghost")
        # The operator still reads it (what it needs to admit devices).
        got = await identity(op.nc, "edge-a")
        assert got is not None and got.live
    finally:
        await a.close()
        await op.close()
    admin = await connect(tls_options(nats_server, nats_server.admin_creds))
    try:
        assert await identity(admin, "ghost") is None
    finally:
        await admin.close()
