"""Background tasks that live as long as a process (the agent's, the operator's).

Both long-running processes start a handful of tasks (heartbeats, flushes, extensions) and must
stop them all on shutdown without one failing task hiding the others: this is that one helper.

A stop must also end: a task that swallows its cancellation, or awaits something that never
answers on its way out (a client library's unsubscribe on a dead connection), would otherwise
hold the process past its stop for ever. :meth:`BackgroundTasks.cancel_all` waits a bounded
grace, then names each task still running and where it waits, and returns: the process exits
and the log says which task to fix.

:func:`wait_event` is how a loop waits for an event with a timeout. Not
``asyncio.wait_for(event.wait(), t)``: on Python 3.11 that swallows a cancellation arriving while
the event is being set, and the task carries on as if it had not been cancelled; a ``while True``
loop waiting that way (the upgrade coordinator's, woken by every status) then never stops, and
neither does its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Collection
from typing import Any

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
"""How long a stop waits for its cancelled tasks before it leaves them behind (and says so)."""

RECANCEL_S = 0.1
"""How often a task that has not ended is cancelled again while a stop waits for it."""


class BackgroundTasks:
    """Tasks spawned for the life of a process; :meth:`cancel_all` ends them and waits."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.append(task)
        return task

    async def cancel_all(self, grace_s: float = STOP_GRACE_S) -> list[str]:
        """Cancel every task and wait for them, ``grace_s`` at most in all.

        Returns the names of the tasks still running after the grace (each logged with the
        place it waits at); an empty list on a clean stop. A task's own failure is not
        raised here: it was the task's to log.
        """
        stuck = await cancel_and_wait(self.tasks, grace_s)
        for task in stuck:
            where = io.StringIO()
            task.print_stack(limit=5, file=where)
            log.warning(
                "task did not stop: left behind",
                extra={"task": task.get_name(), "grace_s": grace_s, "stack": where.getvalue()},
            )
        return [t.get_name() for t in stuck]


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[Any]], grace_s: float = STOP_GRACE_S
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait for them to end, ``grace_s`` at most; return those left running.

    Cancels again every :data:`RECANCEL_S`: a cancellation can be swallowed by code a task
    awaits (``asyncio.wait_for`` on Python 3.11, which client libraries use for their
    requests: a watch being set up as the stop comes), and the next one lands at the task's
    next await. Called from a task that is itself being cancelled (a ``finally`` on its way
    out), it still ends its children first, then lets its own cancellation go on. A task's
    failure is retrieved, not raised: it was the task's to log.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    running = {t for t in tasks if not t.done()}
    cancelled = False
    while running:
        for task in running:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            await asyncio.wait(running, timeout=min(RECANCEL_S, left))
        except asyncio.CancelledError:
            cancelled = True
        running = {t for t in running if not t.done()}
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
    if cancelled:
        raise asyncio.CancelledError
    return [t for t in tasks if not t.done()]


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set, ``timeout_s`` at most; return whether it is set.

    A cancellation always goes through, even one arriving as the event is set (see the module
    docstring for the ``asyncio.wait_for`` that does not).
    """
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    return event.is_set()
