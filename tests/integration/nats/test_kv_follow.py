"""``TypedKV.follow``: a value written while the follower was disconnected still arrives soon.

An idle follower sends nothing between writes (its key's subject wakes it); a write made while
its connection was down crosses no subscription of its, so it reads the key again when its
connection says it is back (``on_reconnected``), at the latest within
``FOLLOW_RECONNECT_CHECK_S`` of the reconnect, long before the 60 s safety poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import connect, on_reconnected
from harmony_fleet.adapters.nats.fleet_kv import BucketDef
from harmony_fleet.adapters.nats.kv import (
    FOLLOW_POLL_S,
    FOLLOW_RECONNECT_CHECK_S,
    FOLLOW_REREAD_S,
    Entry,
    TypedKV,
)
from harmony_fleet.adapters.nats.provision import ensure_bucket
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import HEARTBEAT, Heartbeat, Role


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


@contextlib.asynccontextmanager
async def _following(store: TypedKV[Heartbeat], nc: Any) -> AsyncIterator[list[int]]:
    """The ``seq`` of every value ``store.follow`` yields for ``dev-1``, as they come; the
    first one is awaited before the body runs."""
    seen: list[int] = []

    async def follow() -> None:
        async for entry in store.follow(nc, "dev-1"):
            seen.append(entry.value.seq)

    task = asyncio.ensure_future(follow())
    try:
        await eventually(lambda: seen == [1], timeout=10, what="the first value")
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_write_made_while_the_follower_was_away_arrives_after_it_reconnects(
    nats_server: EmbeddedNats,
) -> None:
    # The follower waits 3 s between reconnect attempts: the write below lands while it is away.
    follower = await connect(nats_server.client_options(reconnect_wait_s=3.0))
    writer_options = nats_server.client_options(reconnect_wait_s=0.1)
    writer = await connect(writer_options)
    raw = await ensure_bucket(writer.jetstream(), BucketDef("t_follow", HEARTBEAT, "t"), replicas=1)
    await TypedKV(raw, HEARTBEAT, name="t_follow").put("dev-1", _hb(1))
    await writer.close()
    mine = TypedKV(await follower.jetstream().key_value("t_follow"), HEARTBEAT, name="t_follow")
    try:
        async with _following(mine, follower) as seen:
            nats_server.stop()
            nats_server.start()
            writer = await connect(writer_options)
            raw = await writer.jetstream().key_value("t_follow")
            await TypedKV(raw, HEARTBEAT, name="t_follow").put("dev-1", _hb(2))
            await writer.close()
            assert seen == [1]  # written while the follower was still away
            limit = 3.0 + FOLLOW_RECONNECT_CHECK_S + 5.0
            assert limit < FOLLOW_POLL_S
            await eventually(lambda: seen == [1, 2], timeout=limit, what="the value written away")
    finally:
        await follower.close()
    assert seen == [1, 2]


async def test_a_connection_tells_its_listeners_when_it_is_back(nats_server: EmbeddedNats) -> None:
    # What lets an idle follow sleep until its poll rather than look at the connection every
    # FOLLOW_RECONNECT_CHECK_S.
    nc = await connect(nats_server.client_options(reconnect_wait_s=0.1))
    told: list[str] = []
    stop_a = on_reconnected(nc, lambda: told.append("a"))
    stop_b = on_reconnected(nc, lambda: told.append("b"))
    try:
        assert stop_a is not None and stop_b is not None
        assert on_reconnected(object(), lambda: None) is None  # not made by connect(): no word
        nats_server.stop()
        nats_server.start()
        await eventually(lambda: told == ["a", "b"], timeout=20, what="both listeners told")
        stop_a()
        nats_server.stop()
        nats_server.start()
        await eventually(lambda: told == ["a", "b", "b"], timeout=20, what="only b told")
    finally:
        await nc.close()
    assert told == ["a", "b", "b"]


class _LaggingStore(TypedKV[Heartbeat]):
    """A store whose next ``lag`` reads answer the value before the last write: what a direct
    get made as the key's subject wakes the follower can answer while the stream has not
    stored the write yet."""

    lag = 0
    before: Any = None

    async def read(self, key: str) -> Any:
        found = await super().read(key)
        if self.lag > 0:
            self.lag -= 1
            return self.before
        self.before = found
        return found

    @classmethod
    async def made(cls, nc: Any, bucket: str) -> _LaggingStore:
        """A lagging store over a new bucket ``bucket`` on ``nc``'s server."""
        raw = await ensure_bucket(nc.jetstream(), BucketDef(bucket, HEARTBEAT, "t"), replicas=1)
        return cls(raw, HEARTBEAT, name=bucket)


async def test_a_wake_whose_read_answers_the_old_value_is_read_again_soon(
    nats_server: EmbeddedNats,
) -> None:
    nc = await connect(nats_server.client_options())
    store = await _LaggingStore.made(nc, "t_lag")
    await store.put("dev-1", _hb(1))
    try:
        async with _following(store, nc) as seen:
            store.lag = 3  # the wake's read and the next two answer value 1 still
            await store.put("dev-1", _hb(2))
            limit = sum(FOLLOW_REREAD_S[:4]) + 5.0
            assert limit < FOLLOW_POLL_S
            await eventually(lambda: seen == [1, 2], timeout=limit, what="the value read again")
    finally:
        await nc.close()
    assert seen == [1, 2]


async def test_a_read_after_a_wake_waits_out_a_store_that_has_not_stored_the_write_yet(
    nats_server: EmbeddedNats,
) -> None:
    # What the simulator does for each marker write it is woken by (no follow per device).
    nc = await connect(nats_server.client_options())
    store = await _LaggingStore.made(nc, "t_wake")
    try:
        known = await store.put("dev-1", _hb(1))
        assert await store.read("dev-1") is not None  # remembers value 1 as "before"
        await store.put("dev-1", _hb(2))
        store.lag = 2
        found = await store.read_after_wake("dev-1", known)
        assert isinstance(found, Entry) and found.value.seq == 2 and found.revision > known
        # nothing newer within the pauses (a write refused by the stream crosses the subject
        # too): one read per pause more, then the last answer
        latest = found.revision
        store.lag = 10
        found = await store.read_after_wake("dev-1", latest, pauses=(0.01, 0.01))
        assert isinstance(found, Entry) and found.revision == latest
        assert store.lag == 10 - 3
    finally:
        await nc.close()
