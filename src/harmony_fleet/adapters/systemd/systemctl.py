"""A small async client for ``systemctl``, ``systemd-run`` and ``journalctl``.

Why the command-line tools and not D-Bus: they are on every systemd machine, need no extra
dependency, speak the stable interface systemd documents for scripts, and each call is one
``execve`` of an argument list (never a shell). They are slower than D-Bus (a few ms a call),
which does not matter at the rate an upgrade asks questions.

Every failure becomes one of :mod:`harmony_fleet.errors`: a missing tool or a machine not booted
with systemd is :class:`SystemdUnavailable`; a call that exits non-zero is
:class:`SystemdError` (with the command, exit code and stderr); a call that hangs past its
deadline is killed and raised as :class:`~harmony_fleet.errors.Timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.adapters.systemd.units import transient_argv
from harmony_fleet.errors import TemporaryError, Timeout, Unavailable

#: Exists only while the machine runs systemd as PID 1 (``sd_booted()``'s test).
BOOTED_MARKER = Path("/run/systemd/system")
#: ``systemctl is-active`` / ``stop`` exit codes that mean "no such unit", not "failed".
_UNIT_NOT_LOADED = 5


class SystemdUnavailable(Unavailable):
    """This machine does not run systemd (or the tools are missing): nothing can be managed."""


class SystemdError(TemporaryError):
    """A systemd tool answered with a non-zero exit code; ``stderr`` says why."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        super().__init__(f"{' '.join(argv[:3])} … exited with {returncode}: {detail}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Result:
    """What one call returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, kw_only=True)
class Systemd:
    """The tools, by name or path, and how long any one call may take."""

    systemctl_bin: str = "systemctl"
    systemd_run_bin: str = "systemd-run"
    journalctl_bin: str = "journalctl"
    timeout_s: float = 30.0

    @staticmethod
    def booted() -> bool:
        """Whether systemd is PID 1 here (the same test as ``sd_booted()``)."""
        return BOOTED_MARKER.is_dir()

    async def call(
        self, argv: Sequence[str], *, check: bool = True, timeout_s: float | None = None
    ) -> Result:
        """Run one tool to completion; raise :class:`SystemdError` on non-zero if ``check``."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C"},
            )
        except FileNotFoundError as exc:
            raise SystemdUnavailable(f"{argv[0]} not found: is this a systemd machine?") from exc
        except OSError as exc:
            raise SystemdUnavailable(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise Timeout(f"{' '.join(argv[:3])} … did not finish within {limit:g} s") from None
        finally:
            if proc.returncode is None:  # cancelled: do not leave the tool running (or unreaped)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(proc.wait(), 2.0)
        result = Result(
            tuple(argv),
            proc.returncode or 0,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise SystemdError(argv, result.returncode, result.stderr)
        return result

    # -- systemctl --------------------------------------------------------------------------

    async def systemctl(
        self, *args: str, check: bool = True, timeout_s: float | None = None
    ) -> Result:
        """``systemctl ARGS``; jobs that stop a unit may need ``timeout_s`` longer than the
        unit's ``TimeoutStopSec`` (the default call timeout is shorter)."""
        argv = [self.systemctl_bin, "--no-ask-password", *args]
        return await self.call(argv, check=check, timeout_s=timeout_s)

    async def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p A,B unit`` as a dict (a unit that does not exist is answered
        with ``LoadState=not-found``, not an error)."""
        result = await self.systemctl("show", f"--property={','.join(props)}", "--", unit)
        values: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key] = value
        return values

    async def is_active(self, unit: str) -> str:
        """``active``, ``inactive``, ``failed``, ``activating``…: the state word, never raises
        for an inactive or unknown unit."""
        result = await self.systemctl("is-active", "--", unit, check=False)
        return result.stdout.strip() or "unknown"

    async def stop(self, unit: str, *, timeout_s: float | None = None) -> bool:
        """Stop ``unit``; False if it was not loaded at all."""
        result = await self.systemctl("stop", "--", unit, check=False, timeout_s=timeout_s)
        if result.returncode == _UNIT_NOT_LOADED:
            return False
        if result.returncode != 0:
            raise SystemdError(result.argv, result.returncode, result.stderr)
        return True

    async def kill(self, unit: str, signal_name: str, *, main_only: bool = True) -> None:
        whom = "main" if main_only else "all"
        await self.systemctl("kill", f"--kill-whom={whom}", f"--signal={signal_name}", "--", unit)

    async def reset_failed(self, unit: str) -> None:
        """Forget a failed unit (so a transient one is unloaded); quiet if it is not loaded."""
        await self.systemctl("reset-failed", "--", unit, check=False)

    async def daemon_reload(self) -> None:
        await self.systemctl("daemon-reload")

    async def list_units(self, pattern: str) -> list[str]:
        """Names of loaded units matching a glob, in any state."""
        result = await self.systemctl(
            "list-units", "--all", "--plain", "--no-legend", "--full", "--", pattern
        )
        return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]

    # -- systemd-run and journalctl -----------------------------------------------------------

    async def run_transient(
        self,
        unit: str,
        command: Sequence[str],
        *,
        description: str,
        properties: Mapping[str, str],
        pass_env: Sequence[str] = (),
    ) -> None:
        """Start ``command`` as the transient service ``unit`` (see :func:`transient_argv`)."""
        argv = transient_argv(
            unit,
            command,
            description=description,
            properties=properties,
            pass_env=pass_env,
            systemd_run=self.systemd_run_bin,
        )
        await self.call(argv)

    async def journal_tail(self, unit: str, lines: int) -> tuple[str, ...]:
        """The unit's last ``lines`` messages (``journalctl -u UNIT -n N -o cat``); empty when
        the journal cannot be read, since a log tail is a help, never a reason to fail."""
        try:
            result = await self.call(
                [
                    self.journalctl_bin,
                    "--no-pager",
                    "-q",
                    "-u",
                    unit,
                    "-n",
                    str(lines),
                    "-o",
                    "cat",
                ],
                check=False,
            )
        except (SystemdUnavailable, Timeout):
            return ()
        return tuple(line for line in result.stdout.splitlines() if line.strip())[-lines:]
