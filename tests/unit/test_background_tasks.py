"""A stop ends: tasks that refuse their cancellation are left behind, named, within the grace."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest

import harmony_fleet
from harmony_fleet._tasks import BackgroundTasks, cancel_and_wait, wait_event


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


async def test_a_loop_waiting_on_an_event_stops_when_cancelled_as_the_event_is_set() -> None:
    """The upgrade coordinator's loop, woken by every status: with ``asyncio.wait_for`` a
    cancellation arriving as the event was set was swallowed and the loop ran for ever (its
    operator never stopped). ``wait_event`` lets it through."""
    wake = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            wake.clear()
            rounds += 1
            await wait_event(wake, 10.0)

    task = asyncio.ensure_future(loop())
    for _ in range(3):
        await asyncio.sleep(0)
    assert rounds == 1
    wake.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5.0)
    assert done == {task} and task.cancelled()


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.0) is True


def test_no_loop_waits_on_an_event_through_asyncio_wait_for() -> None:
    """``asyncio.wait_for(event.wait(), t)`` swallows cancellations on Python 3.11: the
    package waits on events through ``wait_event`` (processes' ``wait()`` are not events)."""
    src = Path(harmony_fleet.__file__).parent
    pattern = re.compile(r"asyncio\.wait_for\(\s*([\w.]+)\.wait\(\)")
    offences = [
        f"{path.relative_to(src)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for path in sorted(src.rglob("*.py"))
        if path.name != "_tasks.py"  # its docstring names the pattern
        for text in [path.read_text()]
        for m in pattern.finditer(text)
        if not m.group(1).split(".")[-1].startswith("proc")
    ]
    assert offences == []


async def _swallows_one_cancellation(entered: asyncio.Event) -> None:
    """Like a watch whose setup request swallowed the stop's cancellation (``wait_for`` on
    Python 3.11), then follows its updates for ever."""
    try:
        entered.set()
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        pass
    await asyncio.Event().wait()


async def test_a_task_that_swallowed_one_cancellation_is_cancelled_again() -> None:
    entered = asyncio.Event()
    tasks = BackgroundTasks()
    watch = tasks.spawn(_swallows_one_cancellation(entered), "watch")
    await entered.wait()

    started = time.monotonic()
    assert await tasks.cancel_all(grace_s=30.0) == []
    assert watch.cancelled()
    assert time.monotonic() - started < 5.0


async def test_a_task_cancelled_while_it_ends_its_children_ends_them_first() -> None:
    entered = asyncio.Event()
    children: list[asyncio.Task[None]] = []

    async def parent() -> None:
        children.append(asyncio.ensure_future(_swallows_one_cancellation(entered)))
        try:
            await asyncio.Event().wait()
        finally:
            await cancel_and_wait(children, grace_s=30.0)

    task = asyncio.ensure_future(parent())
    await entered.wait()
    assert await cancel_and_wait([task], grace_s=30.0) == []
    assert task.cancelled()
    assert children[0].cancelled()
