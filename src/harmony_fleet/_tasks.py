"""Background tasks that live as long as a process (the agent's, the operator's).

Both long-running processes start a handful of tasks (heartbeats, flushes, extensions) and must
stop them all on shutdown without one failing task hiding the others: this is that one helper.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any


class BackgroundTasks:
    """Tasks spawned for the life of a process; :meth:`cancel_all` ends them and waits."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.append(task)
        return task

    async def cancel_all(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
