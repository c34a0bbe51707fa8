"""Device edge-a, holding its own real credentials, attacks device edge-b and the fleet.

Every attack must be refused by the server (a permission violation reported to the client) and
leave no trace (read back as the admin); a control next to most of them shows that the same
move on edge-a's own subjects works, so the refusal is the permission and not a broken setup.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, barrier, connect
from harmony_fleet.adapters.nats.fleet_kv import LOG_STREAM, FleetKV, write_marker
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    Command,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    Verb,
    encode,
    new_instance_id,
    subjects,
)
from harmony_fleet.errors import ConfigError
from tests.helpers import run_fleet
from tests.security.support import Attacker, attacker, tls_options

MARKER_STREAM = "KV_fleet_upgrade_marker"


def _marker(
    device: str, url: str = "https://artifacts.example/a.pyz?token=SECRET"
) -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=f"u{device.replace('-', '')}1",
        device_id=device,
        target_version="2.0.0",
        artifact_url=url,
        sha256="a" * 64,
        size=10,
        requested_at=time.time(),
        requested_by="test",
        timeouts=UpgradeTimeouts(),
    )


async def _received(nc: NatsClient, subject: str) -> list[bytes]:
    got: list[bytes] = []

    async def keep(msg: object) -> None:
        got.append(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(subject, cb=keep)
    await barrier(nc)
    return got


async def test_without_credentials_the_connection_is_refused(nats_server: EmbeddedNats) -> None:
    with pytest.raises(ConfigError, match="refused the credentials"):
        await connect(tls_options(nats_server, None))
    plain = nats_server.url.replace("tls://", "nats://")
    with pytest.raises(ConfigError):  # no TLS either: the server requires it
        await connect(NatsOptions(servers=(plain,)))


async def test_a_server_certificate_from_another_ca_is_refused(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    from harmony_fleet.adapters.nats.pki import make_ca_and_server_cert

    make_ca_and_server_cert(tmp_path / "other")
    options = NatsOptions(
        servers=(nats_server.url,),
        creds_file=str(nats_server.admin_creds),
        tls_ca_file=str(tmp_path / "other" / "ca.pem"),
    )
    with pytest.raises(ConfigError, match="not signed by the CA"):
        await connect(options)


async def test_a_cannot_publish_b_heartbeat(device_a: Attacker, nc: NatsClient) -> None:
    b_beats = await _received(nc, subjects.heartbeat("edge-b"))
    a_beats = await _received(nc, subjects.heartbeat("edge-a"))
    await device_a.nc.publish(subjects.heartbeat("edge-b"), b"{}")
    await device_a.nc.publish(subjects.heartbeat("edge-a"), b"{}")
    await device_a.refused(subjects.heartbeat("edge-b"))
    await barrier(nc)
    assert a_beats == [b"{}"], "the control: its own heartbeat goes through"
    assert b_beats == []


async def test_a_cannot_write_b_status(device_a: Attacker, nc: NatsClient) -> None:
    forged = UpgradeStatus(
        device_id="edge-b",
        upgrade_id="uforged1",
        phase=AgentUpgradePhase.SUCCEEDED,
        from_version="1.0.0",
        to_version="9.9.9",
        instance_id=new_instance_id(),
        started_at=time.time(),
        updated_at=time.time(),
    )
    await device_a.nc.publish("$KV.fleet_upgrade_status.edge-b", encode(forged))
    await device_a.refused("$KV.fleet_upgrade_status.edge-b")
    own = await device_a.nc.jetstream().publish(
        "$KV.fleet_upgrade_status.edge-a", encode(forged), timeout=5
    )
    assert own.seq > 0, "the control: it writes its own status key"
    assert await (await FleetKV(nc).statuses()).read("edge-b") is None


async def test_a_cannot_read_b_marker_by_any_path(device_a: Attacker, nc: NatsClient) -> None:
    await write_marker(nc, _marker("edge-a", "https://artifacts.example/a.pyz"))
    await write_marker(nc, _marker("edge-b"))
    # The control, by the agent's own path: a direct get of its own key.
    own = await (await FleetKV(device_a.nc).markers()).read("edge-a")
    assert own is not None
    a_nc = device_a.nc
    b_key = "$KV.fleet_upgrade_marker.edge-b"
    attempts = {
        "direct get": (f"$JS.API.DIRECT.GET.{MARKER_STREAM}.{b_key}", b""),
        "stream msg get": (
            f"$JS.API.STREAM.MSG.GET.{MARKER_STREAM}",
            json.dumps({"last_by_subj": b_key}).encode(),
        ),
        "unfiltered consumer": (
            f"$JS.API.CONSUMER.CREATE.{MARKER_STREAM}",
            json.dumps(
                {"stream_name": MARKER_STREAM, "config": {"filter_subject": b_key}}
            ).encode(),
        ),
        "consumer filtered to b": (
            f"$JS.API.CONSUMER.CREATE.{MARKER_STREAM}.x.{b_key}",
            json.dumps(
                {"stream_name": MARKER_STREAM, "config": {"name": "x", "filter_subject": b_key}}
            ).encode(),
        ),
    }
    leaked: list[bytes] = []
    for what, (subject, body) in attempts.items():
        try:
            msg = await a_nc.request(subject, body, timeout=0.5)
            leaked.append(msg.data)
        except Exception:
            pass
        await device_a.refused(subject, what=what)
    sub = await a_nc.subscribe(b_key)
    await device_a.refused(b_key, what="a subscription to b's key")
    await sub.unsubscribe()
    assert not any(b"SECRET" in data for data in leaked), leaked


async def test_a_cannot_create_a_consumer_delivering_into_b(
    device_a: Attacker, nc: NatsClient
) -> None:
    """The consumer whose deliver subject is another device's command subject (measured to
    work when a device may create even its own filtered consumer: docs/security.md)."""
    a_key = "$KV.fleet_upgrade_marker.edge-a"
    await write_marker(nc, _marker("edge-a"))
    b_cmds = await _received(nc, subjects.command("edge-b"))
    config = {"name": "y", "filter_subject": a_key, "deliver_subject": subjects.command("edge-b")}
    subject = f"$JS.API.CONSUMER.CREATE.{MARKER_STREAM}.y.{a_key}"
    await device_a.nc.publish(
        subject, json.dumps({"stream_name": MARKER_STREAM, "config": config}).encode()
    )
    await device_a.refused(subject)
    await barrier(nc)
    assert b_cmds == []


async def test_a_cannot_listen_to_b(device_a: Attacker) -> None:
    for subject in (
        subjects.command("edge-b"),
        f"{subjects.inbox_prefix('edge-b')}.>",
        "_INBOX.>",
        subjects.ALL_HEARTBEATS,
        "fleet.edge-b.logs.>",
    ):
        sub = await device_a.nc.subscribe(subject)
        error = await device_a.refused(subject, what=f"subscribing to {subject}")
        assert "subscription" in error.lower(), error
        await sub.unsubscribe()


async def test_a_cannot_send_commands_not_even_to_itself(
    device_a: Attacker, nc: NatsClient
) -> None:
    now = time.time()
    stop = Command(
        command_id="c1",
        verb=Verb.UPGRADE_STOP,
        issued_at=now,
        expires_at=now + 30,
        args={"upgrade_id": "uforged1"},
    )
    b_cmds = await _received(nc, subjects.command("edge-b"))
    for device in ("edge-b", "edge-a"):
        await device_a.nc.publish(subjects.command(device), encode(stop))
        await device_a.refused(subjects.command(device))
    await barrier(nc)
    assert b_cmds == []


async def test_a_cannot_create_or_delete_streams_or_buckets(
    device_a: Attacker, nc: NatsClient
) -> None:
    js = nc.jetstream()
    before = (await js.stream_info(LOG_STREAM)).config
    evil_stream = json.dumps({"name": "EVIL", "subjects": ["fleet.>"]}).encode()
    evil_bucket = json.dumps({"name": "KV_evil", "subjects": ["$KV.evil.>"]}).encode()
    for subject, body in (
        ("$JS.API.STREAM.CREATE.EVIL", evil_stream),
        ("$JS.API.STREAM.CREATE.KV_evil", evil_bucket),
        (f"$JS.API.STREAM.DELETE.{LOG_STREAM}", b""),
        (f"$JS.API.STREAM.PURGE.{LOG_STREAM}", b""),
        (f"$JS.API.STREAM.UPDATE.{LOG_STREAM}", json.dumps({"name": LOG_STREAM}).encode()),
        (f"$JS.API.STREAM.DELETE.{MARKER_STREAM}", b""),
    ):
        await device_a.nc.publish(subject, body)
        await device_a.refused(subject)
    names = [s.config.name for s in await js.streams_info()]
    assert "EVIL" not in names and "KV_evil" not in names
    assert LOG_STREAM in names and MARKER_STREAM in names
    assert (await js.stream_info(LOG_STREAM)).config == before


async def test_the_viewer_reads_but_writes_and_commands_nothing(
    nats_server: EmbeddedNats, creds: dict[str, Path], nc: NatsClient
) -> None:
    await write_marker(nc, _marker("edge-b"))
    viewer = await attacker(
        nats_server, creds["viewer"], inbox_prefix=subjects.viewer_inbox_prefix("viewer")
    )
    try:
        seen = await (await FleetKV(viewer.nc).markers()).read("edge-b")
        assert seen is not None, "the control: a viewer reads"
        for subject in (
            "$KV.fleet_upgrade_marker.edge-b",
            subjects.command("edge-b"),
            subjects.heartbeat("edge-b"),
            f"$JS.API.STREAM.DELETE.{LOG_STREAM}",
        ):
            await viewer.nc.publish(subject, b"{}")
            await viewer.refused(subject)
    finally:
        await viewer.close()


async def test_the_operator_cannot_delete_the_log_stream(
    nats_server: EmbeddedNats, creds: dict[str, Path], nc: NatsClient
) -> None:
    operator = await attacker(nats_server, creds["operator"])
    try:
        for subject in (
            f"$JS.API.STREAM.DELETE.{LOG_STREAM}",
            f"$JS.API.STREAM.PURGE.{LOG_STREAM}",
        ):
            await operator.nc.publish(subject, b"")
            await operator.refused(subject)
        assert (await nc.jetstream().stream_info(LOG_STREAM)).config.name == LOG_STREAM
    finally:
        await operator.close()


async def test_device_b_is_unaffected(
    nats_server: EmbeddedNats, creds: dict[str, Path], device_a: Attacker, nc: NatsClient
) -> None:
    """After edge-a's attacks, edge-b's own credentials still do all an agent needs."""
    await device_a.nc.publish(subjects.heartbeat("edge-b"), b"{}")
    await device_a.refused(subjects.heartbeat("edge-b"))
    b = await attacker(nats_server, creds["edge-b"], inbox_prefix=subjects.inbox_prefix("edge-b"))
    try:
        beats = await _received(nc, subjects.heartbeat("edge-b"))
        await b.nc.publish(subjects.heartbeat("edge-b"), b"{}")
        await write_marker(nc, _marker("edge-b"))
        mine = await (await FleetKV(b.nc).markers()).read("edge-b")
        assert mine is not None
        await asyncio.wait_for(b.nc.flush(), 5)
        await barrier(nc)
        assert beats == [b"{}"]
        assert b.errors == []
    finally:
        await b.close()


async def test_a_status_under_a_key_naming_b_is_not_shown_as_b(
    device_a: Attacker, nc: NatsClient
) -> None:
    """Device edge-a may write its own status key with anything in it: `fleet upgrade-status`
    files a status under its key, and says that the body named another device (fails when
    the body's device_id is believed: edge-b shows "Succeeded")."""
    forged = UpgradeStatus(
        device_id="edge-b",
        upgrade_id="uforged1",
        phase=AgentUpgradePhase.SUCCEEDED,
        from_version="1.0.0",
        to_version="9.9.9",
        instance_id=new_instance_id(),
        started_at=time.time(),
        updated_at=time.time(),
    )
    await device_a.nc.jetstream().publish(
        "$KV.fleet_upgrade_status.edge-a", encode(forged), timeout=5
    )
    every = await asyncio.to_thread(run_fleet, "upgrade-status", "--json")
    assert every.returncode == 0, every.stderr
    assert "edge-b" not in every.stdout
    assert "edge-a: its status names device 'edge-b': ignored" in every.stderr
    one = await asyncio.to_thread(run_fleet, "upgrade-status", "edge-b")
    assert one.returncode == 3, one.stdout
