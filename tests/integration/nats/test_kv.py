"""The typed KV adapter against a real nats-server: CAS, decode errors, outcome-unknown."""

from __future__ import annotations

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.kv import TypedKV, open_bucket
from harmony_fleet.contracts import HEARTBEAT, Heartbeat, Role
from harmony_fleet.errors import Conflict, InvalidMessage


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


async def test_put_get_and_compare_and_set(nc: NatsClient) -> None:
    kv = TypedKV(await open_bucket(nc.jetstream(), "t_kv"), HEARTBEAT, name="t_kv")
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
    raw = await open_bucket(nc.jetstream(), "t_kv2")
    await raw.put("dev-1", b'{"device_id":"dev-1"}')
    kv = TypedKV(raw, HEARTBEAT, name="t_kv2")
    with pytest.raises(InvalidMessage) as info:
        await kv.get("dev-1")
    assert info.value.field.startswith("$.")
    items = [item async for item in kv.items()]
    assert len(items) == 1
    assert isinstance(items[0], InvalidMessage)


async def test_opening_a_bucket_twice_is_idempotent(nc: NatsClient) -> None:
    js = nc.jetstream()
    first = await open_bucket(js, "t_kv3")
    await first.put("k", b"{}")
    second = await open_bucket(js, "t_kv3")
    assert (await second.get("k")).value == b"{}"
