"""The simulator's ``sim`` credential: a device's rights for ``sim-`` ids on a dev/test server,
nothing of a real device's, and never issued by a production server (docs/sim.md).

Every attack is refused by the server (a permission violation reported to the client) and
leaves no trace (read back as the admin); a control beside it shows the same move for a
simulated device goes through.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, barrier, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, write_marker
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
    encode,
    new_instance_id,
    subjects,
)
from harmony_fleet.errors import ConfigError, Refused
from tests.security.support import Attacker, attacker

REAL, SIM = "edge-01", "sim-00001"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log", dev=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def admin(dev_server: EmbeddedNats) -> AsyncIterator[NatsClient]:
    nc = await connect(dev_server.client_options().with_name("test"))
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def sim(dev_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[Attacker]:
    """The sim credential, issued after the real device edge-01 (as the server requires)."""
    dev_server.issue("device", REAL, tmp_path / "real.creds")
    creds = dev_server.issue("sim", "sim-lab", tmp_path / "sim.creds")
    client = await attacker(dev_server, creds)
    try:
        yield client
    finally:
        await client.close()


def _status(device: str) -> UpgradeStatus:
    return UpgradeStatus(
        device_id=device,
        upgrade_id="uforged1",
        phase=AgentUpgradePhase.SUCCEEDED,
        from_version="1.0.0",
        to_version="9.9.9",
        instance_id=new_instance_id(),
        started_at=time.time(),
        updated_at=time.time(),
    )


def _marker(device: str) -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id="usim1",
        device_id=device,
        target_version="2.0.0",
        artifact_url="https://artifacts.example/a.pyz",
        sha256="a" * 64,
        requested_at=time.time(),
    )


async def _received(nc: NatsClient, subject: str) -> list[bytes]:
    got: list[bytes] = []

    async def keep(msg: object) -> None:
        got.append(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(subject, cb=keep)
    await barrier(nc)
    return got


def test_a_production_server_refuses_to_issue_sim_credentials(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    with pytest.raises(Refused, match="fleet server --dev"):
        nats_server.issue("sim", "sim-lab", tmp_path / "sim.creds")
    assert "sim-lab" not in nats_server.auth.issued()


def test_a_dev_server_restarted_without_dev_stops_issuing_them(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    with EmbeddedNats(store_dir=store, dev=True) as server:
        server.issue("sim", "sim-lab", tmp_path / "sim.creds")
    with EmbeddedNats(store_dir=store) as server, pytest.raises(Refused):
        server.issue("sim", "sim-other", tmp_path / "other.creds")


def test_simulated_and_real_ids_never_mix(dev_server: EmbeddedNats, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="may not start with 'sim-'"):
        dev_server.issue("device", "sim-00001", tmp_path / "a.creds")
    with pytest.raises(ConfigError, match="must start with 'sim-'"):
        dev_server.issue("sim", "lab", tmp_path / "b.creds")
    dev_server.issue("sim", "sim-lab", tmp_path / "sim.creds")
    # Its deny list names the devices issued before it: a later one would be outside it.
    with pytest.raises(Refused, match="live sim credentials"):
        dev_server.issue("device", "edge-02", tmp_path / "c.creds")


async def test_sim_cannot_publish_a_real_device_heartbeat(sim: Attacker, admin: NatsClient) -> None:
    real = await _received(admin, subjects.heartbeat(REAL))
    simulated = await _received(admin, subjects.heartbeat(SIM))
    await sim.nc.publish(subjects.heartbeat(REAL), b"{}")
    await sim.nc.publish(subjects.heartbeat(SIM), b"{}")
    await sim.refused(subjects.heartbeat(REAL))
    await barrier(admin)
    assert simulated == [b"{}"], "the control: a simulated device's heartbeat goes through"
    assert real == []


async def test_sim_cannot_write_a_real_device_status(sim: Attacker, admin: NatsClient) -> None:
    await sim.nc.publish(f"$KV.fleet_upgrade_status.{REAL}", encode(_status(REAL)))
    await sim.refused(f"$KV.fleet_upgrade_status.{REAL}")
    own = await sim.nc.jetstream().publish(
        f"$KV.fleet_upgrade_status.{SIM}", encode(_status(SIM)), timeout=5
    )
    assert own.seq > 0, "the control: it writes a simulated device's status"
    assert await (await FleetKV(admin).statuses()).read(REAL) is None


async def test_sim_cannot_read_a_real_device_marker(sim: Attacker, admin: NatsClient) -> None:
    await write_marker(admin, _marker(REAL))
    await write_marker(admin, _marker(SIM))
    own = await (await FleetKV(sim.nc).markers()).read(SIM)
    assert own is not None, "the control: a simulated device's marker is read by direct get"
    subject = f"$JS.API.DIRECT.GET.KV_fleet_upgrade_marker.$KV.fleet_upgrade_marker.{REAL}"
    await sim.nc.publish(subject, b"")
    await sim.refused(subject)


async def test_sim_hears_no_real_device_command_or_marker_write(
    sim: Attacker, admin: NatsClient
) -> None:
    heard: list[str] = []

    async def keep(msg: object) -> None:
        heard.append(msg.subject)  # type: ignore[attr-defined]

    await sim.nc.subscribe(subjects.command("*"), cb=keep)
    await sim.nc.subscribe("$KV.fleet_upgrade_marker.*", cb=keep)
    await barrier(sim.nc)
    await admin.publish(subjects.command(REAL), b"{}")
    await write_marker(admin, _marker(REAL))
    await admin.publish(subjects.command(SIM), b"{}")
    await write_marker(admin, _marker(SIM))
    await barrier(admin)
    await barrier(sim.nc)
    assert sorted(heard) == sorted([subjects.command(SIM), f"$KV.fleet_upgrade_marker.{SIM}"]), (
        "the sim hears its own devices and nothing of the real one"
    )
    await sim.nc.subscribe(subjects.command(REAL))
    await sim.refused(subjects.command(REAL))


async def test_sim_writes_no_marker_registry_or_command(sim: Attacker, admin: NatsClient) -> None:
    for subject in (
        f"$KV.fleet_upgrade_marker.{SIM}",
        f"$KV.fleet_devices.{SIM}",
        subjects.command(SIM),
    ):
        await sim.nc.publish(subject, b"{}")
        await sim.refused(subject)
    assert await (await FleetKV(admin).markers()).read(SIM) is None
    assert await (await FleetKV(admin).devices()).read(SIM) is None
