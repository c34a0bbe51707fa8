"""Ending the processes a local fleet started (its operators), whatever state they are in."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess

log = logging.getLogger(__name__)


async def end_process(
    proc: subprocess.Popen[bytes], *, kill: bool = False, grace_s: float = 30.0
) -> None:
    """SIGTERM (SIGKILL with ``kill``) ``proc``, wait ``grace_s``, then SIGKILL it.

    A stopped (SIGSTOP) process is continued first, so that it can see the signal. A process
    that outlives its grace is a defect (the operator's log names the task it left behind), but
    the fleet still goes: a process outliving its test would keep reconnecting to a server that
    is gone and load every test after it.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, grace_s)
    except subprocess.TimeoutExpired:
        log.warning("process did not stop on SIGTERM: killed", extra={"pid": proc.pid})
        proc.kill()
        await asyncio.to_thread(proc.wait, 15)
