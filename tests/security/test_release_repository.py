"""The signed release repository on NATS (``fleet_tuf`` metadata, ``fleet_artifacts`` objects):
a device reads both by direct get only and writes neither; the operator re-signs metadata but
never writes an artifact. Real credentials against the real server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.server import EmbeddedNats
from tests.security.support import Attacker, attacker

TUF_STREAM = "KV_fleet_tuf"
OBJ_STREAM = "OBJ_fleet_artifacts"
ARTIFACT = "ab" * 32 + ".harmony-fleet-agent-2.0.0.pyz"
META_SUBJECT = "$O.fleet_artifacts.M." + base64.urlsafe_b64encode(ARTIFACT.encode()).decode()


@pytest.fixture
async def published(nc: NatsClient) -> bytes:
    """Metadata and one artifact, written as the admin (the release manager)."""
    js = nc.jetstream()
    await (await js.key_value("fleet_tuf")).put("timestamp.json", b'{"signed": "real"}')
    body = b"artifact bytes " * 20_000  # three chunks
    await (await js.object_store("fleet_artifacts")).put(ARTIFACT, body)
    return body


@pytest.fixture
async def operator(nats_server: EmbeddedNats, creds: dict[str, Path]) -> AsyncIterator[Attacker]:
    client = await attacker(nats_server, creds["operator"])
    try:
        yield client
    finally:
        await client.close()


async def _direct_get(client: Attacker, subject: str, body: dict[str, object]) -> object:
    return await client.nc.request(subject, json.dumps(body).encode(), timeout=2)


async def test_a_device_reads_metadata_and_artifacts_by_direct_get(
    device_a: Attacker, published: bytes
) -> None:
    msg = await device_a.nc.request(
        f"$JS.API.DIRECT.GET.{TUF_STREAM}.$KV.fleet_tuf.timestamp.json", b"", timeout=2
    )
    assert msg.data == b'{"signed": "real"}'
    meta = await _direct_get(
        device_a, f"$JS.API.DIRECT.GET.{OBJ_STREAM}", {"last_by_subj": META_SUBJECT}
    )
    info = json.loads(meta.data)  # type: ignore[attr-defined]
    assert info["name"] == ARTIFACT and info["size"] == len(published)
    chunks, seq = b"", 0
    chunk_subject = f"$O.fleet_artifacts.C.{info['nuid']}"
    while len(chunks) < info["size"]:
        msg = await _direct_get(
            device_a,
            f"$JS.API.DIRECT.GET.{OBJ_STREAM}",
            {"seq": seq + 1, "next_by_subj": chunk_subject},
        )
        chunks += msg.data  # type: ignore[attr-defined]
        seq = int(msg.headers["Nats-Sequence"])  # type: ignore[attr-defined]
    assert chunks == published
    assert device_a.errors == []


async def test_a_device_cannot_write_metadata_or_artifacts(
    device_a: Attacker, published: bytes, nc: NatsClient
) -> None:
    for subject in (
        "$KV.fleet_tuf.timestamp.json",
        "$KV.fleet_tuf.2.root.json",
        META_SUBJECT,
        "$O.fleet_artifacts.C.forged",
    ):
        await device_a.nc.publish(subject, b'{"forged": true}')
        await device_a.refused(subject)
    entry = await (await nc.jetstream().key_value("fleet_tuf")).get("timestamp.json")
    assert entry.value == b'{"signed": "real"}'
    found = await (await nc.jetstream().object_store("fleet_artifacts")).get(ARTIFACT)
    assert found.data == published


async def test_a_device_cannot_read_them_through_a_consumer_nor_purge_them(
    device_a: Attacker, published: bytes
) -> None:
    for stream, filt in ((TUF_STREAM, "$KV.fleet_tuf.>"), (OBJ_STREAM, "$O.fleet_artifacts.>")):
        for subject, body in (
            (f"$JS.API.CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": {}}),
            (
                f"$JS.API.CONSUMER.CREATE.{stream}.x.{filt}",
                {"stream_name": stream, "config": {"name": "x", "filter_subject": filt}},
            ),
            (f"$JS.API.STREAM.PURGE.{stream}", {}),
            (f"$JS.API.STREAM.DELETE.{stream}", {}),
            (f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": 1}),
        ):
            await device_a.nc.publish(subject, json.dumps(body).encode())
            violation = await device_a.refused(subject)
            assert "publish" in violation.lower(), violation


async def test_the_operator_writes_metadata_but_never_an_artifact(
    operator: Attacker, published: bytes, nc: NatsClient
) -> None:
    ack = await operator.nc.request("$KV.fleet_tuf.timestamp.json", b'{"re-signed": 1}', timeout=2)
    assert b"seq" in ack.data  # a JetStream ack: the refresh path works
    for subject in (META_SUBJECT, "$O.fleet_artifacts.C.forged"):
        await operator.nc.publish(subject, b"forged")
        await operator.refused(subject)
    found = await (await nc.jetstream().object_store("fleet_artifacts")).get(ARTIFACT)
    assert found.data == published


def test_every_device_gets_the_same_release_reads() -> None:
    from harmony_fleet.adapters.nats.permissions import RELEASE_READS, device_permissions

    for device in ("edge-a", "edge-b"):
        allowed = device_permissions(device).pub_allow
        assert set(RELEASE_READS) <= set(allowed)
    assert not any(
        s.startswith(("$KV.fleet_tuf", "$O.")) for s in device_permissions("x").pub_allow
    )
