"""An exclusive, process-wide lock on a download target, from ``flock`` on a file beside it.

Two downloads of the same target (two tasks, or a restarted agent racing its old process) must
not interleave writes into one partial file. ``flock`` locks belong to an open file description,
so they exclude other processes and other opens within the same process alike, and the kernel
drops them when the holder dies: a crashed download never leaves a lock behind.

Waiting polls ``LOCK_NB`` with a growing pause instead of blocking in a thread: a blocked
``flock`` cannot be cancelled and would take the lock after its caller gave up. The lock file
is left in place after use; deleting it would let a waiter lock an unlinked inode while a
newcomer locks a fresh one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from harmony_fleet.adapters.http.wrap import wrap_os_error

__all__ = ["exclusive_lock"]

log = logging.getLogger(__name__)


@asynccontextmanager
async def exclusive_lock(path: Path, *, poll_max_s: float = 0.25) -> AsyncIterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` (created if absent) for the ``async with`` body."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise wrap_os_error(exc, path) from exc
    try:
        pause = min(0.005, poll_max_s)
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    waiting = True
                    log.debug("waiting for the lock on %s", path, extra={"lock": str(path)})
                await asyncio.sleep(pause)
                pause = min(pause * 2, poll_max_s)
            except OSError as exc:
                raise wrap_os_error(exc, path) from exc
        yield
    finally:
        os.close(fd)
