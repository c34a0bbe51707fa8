"""The typed KV adapter and the fleet-KV layer against a real nats-server: CAS, decode errors,
opening without creating, the re-watching iterator, marker writes, statuses that fit."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import (
    MARKERS,
    STATUSES,
    BucketDef,
    FleetKV,
    fit_status,
    write_marker,
)
from harmony_fleet.adapters.nats.kv import TypedKV, Undecodable, open_bucket
from harmony_fleet.adapters.nats.provision import ensure_bucket
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.agent.upgrade.wiring import KVStatusSink
from harmony_fleet.contracts import (
    HEARTBEAT,
    MAX_MESSAGE_BYTES,
    AgentUpgradePhase,
    Heartbeat,
    Role,
    UpgradeMarker,
    UpgradeStatus,
    encode,
    subjects,
)
from harmony_fleet.errors import Conflict, InvalidMessage, NotFound, PermanentError

BEATS = BucketDef("t_kv", HEARTBEAT, "test bucket")


def _hb(seq: int) -> Heartbeat:
    return Heartbeat(
        device_id="dev-1",
        instance_id="a" * 32,
        agent_version="1.0.0",
        role=Role.MAIN,
        seq=seq,
        sent_at=1.0,
        uptime_s=0.0,
    )


def _marker(uid: str) -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=uid,
        device_id="dev-1",
        target_version="2.0.0",
        artifact_url="http://artifacts.test/a",
        sha256="0" * 64,
        requested_at=1.0,
    )


async def _beats(nc: NatsClient, name: str = "t_kv") -> TypedKV[Heartbeat]:
    raw = await ensure_bucket(nc.jetstream(), BucketDef(name, HEARTBEAT, "test"), replicas=1)
    return TypedKV(raw, HEARTBEAT, name=name)


async def test_put_get_and_compare_and_set(nc: NatsClient) -> None:
    kv = await _beats(nc)
    assert await kv.get("dev-1") is None
    rev = await kv.create("dev-1", _hb(1))
    with pytest.raises(Conflict):
        await kv.create("dev-1", _hb(2))
    rev2 = await kv.update("dev-1", _hb(2), last=rev)
    with pytest.raises(Conflict):
        await kv.update("dev-1", _hb(3), last=rev)
    entry = await kv.get("dev-1")
    assert entry is not None
    assert entry.value.seq == 2
    assert entry.revision == rev2
    assert await kv.keys() == ["dev-1"]


async def test_a_value_that_does_not_decode_is_an_error_naming_the_field(nc: NatsClient) -> None:
    kv = await _beats(nc, "t_kv2")
    rev = await kv.kv.put("dev-1", b'{"device_id":"dev-1"}')
    with pytest.raises(InvalidMessage) as info:
        await kv.get("dev-1")
    assert info.value.field.startswith("$.")
    found = await kv.read("dev-1")
    assert isinstance(found, Undecodable)
    assert found.revision == rev
    assert found.error.field.startswith("$.")
    items = [item async for item in kv.items()]
    assert len(items) == 1
    assert isinstance(items[0], Undecodable)
    assert isinstance(items[0].error, InvalidMessage)


async def test_creating_a_bucket_twice_is_idempotent(nc: NatsClient) -> None:
    js = nc.jetstream()
    first = await ensure_bucket(js, BucketDef("t_kv3", HEARTBEAT, "test"), replicas=1)
    await first.put("k", b"{}")
    second = await ensure_bucket(js, BucketDef("t_kv3", HEARTBEAT, "test"), replicas=1)
    assert (await second.get("k")).value == b"{}"


async def test_the_server_bootstrap_provisions_every_fleet_bucket_with_direct_gets(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    for name in (
        subjects.BUCKET_DEVICES,
        subjects.BUCKET_UPGRADE_MARKER,
        subjects.BUCKET_UPGRADE_STATUS,
    ):
        info = await js.stream_info(f"KV_{name}")
        assert info.config.allow_direct
        assert info.config.max_msg_size == MAX_MESSAGE_BYTES
    assert (await js.stream_info("FLEET_LOGS")).config.allow_direct


async def test_opening_a_missing_bucket_names_it_and_says_who_creates_it(
    tmp_path: Path,
) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "bare", provision=False)
    server.start()
    try:
        client = await connect(server.client_options().with_name("test"))
        try:
            with pytest.raises(NotFound, match=r"fleet_upgrade_marker.*operator.*fleet server"):
                await write_marker(client, _marker("u1"))
            with pytest.raises(NotFound, match="t_kv"):
                await open_bucket(client.jetstream(), "t_kv")
            with pytest.raises(NotFound):  # opening did not create it
                await FleetKV(client).open(MARKERS)
        finally:
            await client.close()
    finally:
        server.stop()


async def test_an_undecodable_marker_is_replaced_not_a_conflict_for_ever(nc: NatsClient) -> None:
    markers = await FleetKV(nc).markers()
    await markers.kv.put("dev-1", b'{"upgrade_id": 42}')
    replaced = await write_marker(nc, _marker("u1"))
    assert isinstance(replaced, Undecodable)
    entry = await markers.get("dev-1")
    assert entry is not None and entry.value.upgrade_id == "u1"
    assert await write_marker(nc, _marker("u2")) == _marker("u1")


async def test_values_decodes_skips_garbage_and_follows_changes(nc: NatsClient) -> None:
    kv = await _beats(nc, "t_kv4")
    await kv.put("dev-1", _hb(1))
    seen: list[int] = []

    async def consume() -> None:
        async for entry in kv.values("dev-1"):
            seen.append(entry.value.seq)

    task = asyncio.ensure_future(consume())
    try:
        await _until(lambda: seen == [1])
        await kv.kv.put("dev-1", b"not json")
        await kv.put("dev-1", _hb(2))
        await _until(lambda: seen == [1, 2])
        assert seen == [1, 2], "the undecodable value in between is skipped, not yielded"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _status(tail: list[str], detail: str = "") -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id="u1",
        device_id="dev-1",
        phase=AgentUpgradePhase.ROLLED_BACK,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="a" * 32,
        error_code="candidate_exited",
        error_detail=detail,
        candidate_log_tail=tail,
        started_at=1.0,
        updated_at=2.0,
    )


def test_a_status_that_fits_is_left_alone_and_one_too_large_is_trimmed_tail_first() -> None:
    small = _status(["one line"])
    assert fit_status(small) is small
    big = _status([f"line {i} " + "x" * 4000 for i in range(40)], detail="why " * 500)
    fitted = fit_status(big)
    assert len(encode(fitted)) <= MAX_MESSAGE_BYTES
    assert fitted.error_detail == big.error_detail  # the tail went first, the detail stayed
    assert fitted.candidate_log_tail[-1] == big.candidate_log_tail[-1]  # the newest lines stay
    assert "trimmed" in fitted.candidate_log_tail[0]


async def test_a_status_larger_than_the_bucket_takes_still_lands_trimmed(
    nc: NatsClient,
) -> None:
    statuses = await FleetKV(nc).statuses()
    big = _status([f"line {i} " + "x" * 4000 for i in range(40)])
    assert len(encode(big)) > STATUSES.max_value_size
    # As it is, the server refuses it, and says so permanently (never retried for ever).
    with pytest.raises(PermanentError):
        await statuses.put("dev-1", big)
    sink = KVStatusSink()
    sink.kv = statuses
    await sink.write(big)
    entry = await statuses.get("dev-1")
    assert entry is not None and entry.value.upgrade_id == "u1"
    assert entry.value.candidate_log_tail[-1] == big.candidate_log_tail[-1]
