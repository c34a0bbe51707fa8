"""Test helpers: wait on a condition with a deadline (never a bare sleep), run agent processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


def fleet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harmony_fleet", *args]


def start_agent_process(
    device: str, url: str, tmp: Path, *, interval: float = 0.5, extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{device}.log", "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(
            fleet_cmd(
                "agent",
                "run",
                "--device-id",
                device,
                "--nats",
                url,
                "--state-dir",
                str(tmp / device),
                "--heartbeat-interval",
                str(interval),
                "--log-json",
                *extra,
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def run_fleet(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(fleet_cmd(*args), capture_output=True, text=True, timeout=timeout)
