"""The buffer and the handler: bounded, rate limited, counted, never blocking, thread-safe wake."""

from __future__ import annotations

import asyncio
import logging
import threading

from harmony_fleet.agent.logs.buffer import DropReason, LogBuffer, TokenBucket
from harmony_fleet.agent.logs.handler import ShippingHandler
from harmony_fleet.contracts import LogLevel


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def offer(buf: LogBuffer, msg: str = "m", source: str = "agent") -> bool:
    return buf.offer(source, 1.0, LogLevel.INFO, "t", msg)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1)  # 0.1 s at 10/s: one token
    assert not bucket.take(0.1)
    assert sum(bucket.take(10.0) for _ in range(10)) == 5  # refill caps at the burst


def test_rate_zero_means_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=1, now=0.0)
    assert all(bucket.take(0.0) for _ in range(1000))


def test_rate_limit_drops_are_counted_per_source_and_seq_shows_the_gap() -> None:
    clock = Clock()
    buf = LogBuffer(capacity=100, rate=1, burst=3, clock=clock)
    kept = [offer(buf, f"a{i}") for i in range(10)]
    assert kept == [True] * 3 + [False] * 7
    assert offer(buf, source="unit.x"), "each source has its own bucket"
    clock.now += 1.0
    assert offer(buf, "late")
    assert buf.snapshot()[DropReason.RATE_LIMIT] == 7
    lines = buf.take(100)
    assert [(p.source, p.seq) for p in lines] == [
        ("agent", 1),
        ("agent", 2),
        ("agent", 3),
        ("unit.x", 1),
        ("agent", 11),  # 4..10 were dropped: the gap says how many
    ]


def test_full_buffer_evicts_the_oldest_and_counts_by_connection_state() -> None:
    buf = LogBuffer(capacity=3, rate=0)
    buf.connected = True
    for i in range(5):
        offer(buf, f"c{i}")
    buf.connected = False
    for i in range(4):
        offer(buf, f"d{i}")
    drops = buf.snapshot()
    assert drops[DropReason.BUFFER_FULL] == 2
    assert drops[DropReason.DISCONNECTED] == 4
    assert [p.msg for p in buf.take(10)] == ["d1", "d2", "d3"], "the newest lines survive"
    assert buf.offered == 9


def test_handler_never_raises_and_strips_identity_fields() -> None:
    buf = LogBuffer(capacity=10, rate=0)
    logger = logging.getLogger("test.logs.handler")
    logger.propagate = False
    handler = ShippingHandler(buf)
    logger.addHandler(handler)
    try:
        logger.warning("x=%s", 5, extra={"instance_id": "i", "role": "main", "path": "/p"})
        logging.raiseExceptions, saved = False, logging.raiseExceptions
        try:  # wrong arguments: handled by logging's own error path, not raised at the caller
            logger.error("broken %s %s", 1)  # noqa: PLE1206
        finally:
            logging.raiseExceptions = saved
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = buf.take(10)
    assert lines[0].msg == "x=5"
    assert lines[0].fields == {"path": "/p"}
    assert lines[0].level is LogLevel.WARNING
    assert lines[-1].msg.startswith("failed\nTraceback")
    assert "ValueError: boom" in lines[-1].msg


async def test_an_offer_from_another_thread_wakes_the_shipping_task() -> None:
    buf = LogBuffer(capacity=10, rate=0)
    event = buf.bind(asyncio.get_running_loop())
    buf.rearm()
    assert not event.is_set()
    thread = threading.Thread(target=offer, args=(buf, "from a thread"))
    thread.start()
    thread.join()
    await asyncio.wait_for(event.wait(), 5.0)
    assert [p.msg for p in buf.take(10)] == ["from a thread"]


async def test_wake_is_coalesced_until_the_shipper_rearms() -> None:
    buf = LogBuffer(capacity=10, rate=0)
    event = buf.bind(asyncio.get_running_loop())
    buf.rearm()
    offer(buf)
    assert event.is_set()
    event.clear()
    offer(buf)
    assert not event.is_set(), "no second wake before the shipper took the first batch"
    buf.rearm()
    offer(buf)
    assert event.is_set()
