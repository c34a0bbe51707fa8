"""A device's process-mode launcher in a process of its own, started behind a command prefix.

:class:`~harmony_fleet.testing.localfleet.LocalFleet` normally runs each device's
:class:`~harmony_fleet.adapters.process.supervisor.Supervisor` inside the test's own process.
A device whose processes must differ from the test's (above all its clock: ``faketime -f
'+10m'``, or libfaketime's variables through ``env``) gets its launcher here instead:
:class:`LauncherProcess` starts ``[*prefix, python, -m, harmony_fleet.testing.launcher, ...]``,
so the launcher, the main agent it starts and the candidates that agent starts all inherit what
the prefix set up, as every process of one real device shares its clock. The operator, NATS and
the test stay as they are.

Run as a module it supervises ``<prefix>/current`` until SIGTERM or SIGINT, then stops the main
as :meth:`Supervisor.stop` does. Arguments after ``--`` are the agent's own (``--nats``,
``--heartbeat-interval``...), exactly as :class:`LaunchSpec` would pass them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.notes import RUN_DIR
from harmony_fleet.adapters.process.supervisor import Supervisor

log = logging.getLogger(__name__)

#: How long :meth:`LauncherProcess.stop` waits after SIGTERM before SIGKILL (the launcher itself
#: waits up to the supervisor's stop grace for the main).
STOP_WAIT_S = 20.0
_POLL_S = 0.05


class LauncherProcess:
    """One device's launcher as a child process started behind ``command_prefix``."""

    def __init__(
        self, command_prefix: Sequence[str], prefix: Path, launch: LaunchSpec, *, log_file: Path
    ) -> None:
        self.command_prefix = tuple(command_prefix)
        self.prefix = prefix
        self.launch = launch
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [
            *self.command_prefix,
            sys.executable,
            "-m",
            "harmony_fleet.testing.launcher",
            "--prefix",
            str(self.prefix),
            "--state-dir",
            str(self.launch.state_dir),
            "--device-id",
            self.launch.device_id,
            "--",
            *self.launch.nats_args,
            *self.launch.extra_args,
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as out:
            return subprocess.Popen(
                self.argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def start(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = await asyncio.to_thread(self._spawn)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # To the group: a prefix such as ``faketime`` may fork the launcher rather than exec it.
        # The mains the launcher started have sessions of their own: it stops them itself.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        for _ in range(int(STOP_WAIT_S / _POLL_S)):
            if not _group_alive(proc):
                break
            await asyncio.sleep(_POLL_S)
        if _group_alive(proc):
            log.warning("launcher did not stop: killed", extra={"pid": proc.pid})
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    """Is any process of the launcher's group (the prefix's, the launcher) still there?"""
    proc.poll()  # reap the direct child, or it would count as alive
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _supervise(prefix: Path, launch: LaunchSpec) -> int:
    supervisor = Supervisor(AgentLayout(prefix), launch, run_dir=launch.state_dir / RUN_DIR)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await supervisor.start()
    await stop.wait()
    await supervisor.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harmony_fleet.testing.launcher")
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("agent_args", nargs="*", help="after --: the agent's own arguments")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    launch = LaunchSpec(
        device_id=args.device_id, state_dir=args.state_dir, extra_args=tuple(args.agent_args)
    )
    return asyncio.run(_supervise(args.prefix, launch))


if __name__ == "__main__":
    sys.exit(main())
