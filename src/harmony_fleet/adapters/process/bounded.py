"""A bounded run of an artifact to its end: the self-test (both runners) and the installer.

:class:`SelfTestChild` is the one self-test of every candidate runner: a child, on every
platform (it is short, its output is captured directly, and if the agent dies the child dies
with it, in its cgroup under systemd, instead of lingering).

Output is read through a pipe and only its last lines are kept (what a person reads in the
status). The process gets its own session so that, on timeout, the whole group is killed (an
artifact may have children): SIGTERM first, SIGKILL after a short grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections import deque
from pathlib import Path

from harmony_fleet.adapters.device.launch import LaunchSpec, child_env
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade.device import ProcessOutcome

log = logging.getLogger(__name__)

#: Lines of output kept from a self-test (it prints one line per check).
SELF_TEST_TAIL = 20
#: Lines of output kept by default.
LOG_LINES = 50
#: How a note of ours is marked among an artifact's own lines.
NOTE = "[harmony-fleet]"
_KILL_GRACE_S = 2.0


class SelfTestChild:
    """``CandidateRunner.self_test`` for every platform (a runner sets ``layout`` and
    ``launch``)."""

    layout: AgentLayout
    launch: LaunchSpec

    async def self_test(self, marker: UpgradeMarker, timeout_s: float) -> ProcessOutcome:
        """Run the staged target with ``--self-test``; ``NotFound`` if it is not staged."""
        artifact = await asyncio.to_thread(self.layout.staged_artifact, marker.target_version)
        return await run_self_test(self.launch, artifact, timeout_s)


async def run_self_test(
    launch: LaunchSpec, artifact: Path, timeout_s: float, *, log_lines: int = SELF_TEST_TAIL
) -> ProcessOutcome:
    """Run ``artifact … --self-test`` as a child, bounded by ``timeout_s``."""
    outcome = await run_bounded(
        launch.argv(artifact, self_test=True), timeout_s, env=child_env(), log_lines=log_lines
    )
    if outcome.timed_out:
        note = f"{NOTE} self-test killed after {timeout_s:g} s"
        outcome = dataclasses.replace(outcome, log_tail=(*outcome.log_tail, note))
    log.info(
        "self-test ended",
        extra={
            "artifact": str(artifact),
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
        },
    )
    return outcome


async def run_bounded(
    argv: list[str],
    timeout_s: float,
    *,
    env: dict[str, str] | None = None,
    log_lines: int = LOG_LINES,
) -> ProcessOutcome:
    """Run ``argv`` (no shell) to its end or ``timeout_s``; exit code and last output lines.

    The process gets its own session so that, on timeout, the whole group is killed (an artifact
    may have children); SIGTERM first, SIGKILL after a short grace. A signal death is reported
    as ``exit_code=None``, as :class:`ProcessOutcome` documents.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    tail: deque[str] = deque(maxlen=log_lines)
    assert proc.stdout is not None
    stdout = proc.stdout

    async def pump() -> None:
        async for raw in stdout:
            tail.append(raw.decode(errors="replace").rstrip("\n"))

    reader = asyncio.ensure_future(pump())
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        timed_out = True
        await _kill_group(proc)
    finally:
        if proc.returncode is None:  # cancelled: never leave the process behind
            await _kill_group(proc)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, _KILL_GRACE_S)
        reader.cancel()
    code = proc.returncode
    return ProcessOutcome(
        exit_code=code if code is not None and code >= 0 else None,
        log_tail=tuple(tail),
        timed_out=timed_out,
    )


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), _KILL_GRACE_S)
            return
        except TimeoutError:
            continue
