"""A stop ends: tasks that refuse their cancellation are left behind, named, within the grace."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from harmony_fleet._tasks import BackgroundTasks


async def _forever() -> None:
    await asyncio.Event().wait()


async def _refuses_to_stop(released: asyncio.Event) -> None:
    """Swallows every cancellation until ``released`` (a library hanging on its way out)."""
    while not released.is_set():
        try:
            await released.wait()
        except asyncio.CancelledError:
            continue


async def _fails() -> None:
    raise RuntimeError("boom")


async def test_a_clean_stop_cancels_every_task_and_names_none() -> None:
    tasks = BackgroundTasks()
    spawned = [tasks.spawn(_forever(), f"t{i}") for i in range(3)]
    failing = tasks.spawn(_fails(), "fails")
    await asyncio.sleep(0)

    assert await tasks.cancel_all() == []
    assert all(t.cancelled() for t in spawned)
    assert failing.done() and isinstance(failing.exception(), RuntimeError)


async def test_a_task_that_refuses_to_stop_is_left_behind_named_within_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = asyncio.Event()
    tasks = BackgroundTasks()
    tasks.spawn(_forever(), "fine")
    stubborn = tasks.spawn(_refuses_to_stop(released), "stubborn")
    await asyncio.sleep(0)

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="harmony_fleet._tasks"):
        assert await tasks.cancel_all(grace_s=0.2) == ["stubborn"]
    assert time.monotonic() - started < 5.0
    [record] = [r for r in caplog.records if r.getMessage() == "task did not stop: left behind"]
    assert record.__dict__["task"] == "stubborn"
    assert "_refuses_to_stop" in record.__dict__["stack"]

    released.set()
    await asyncio.wait_for(stubborn, 5)
