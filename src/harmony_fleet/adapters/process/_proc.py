"""Process plumbing shared by the process runner and the supervisor (Linux only).

Why this exists rather than plain ``subprocess``/``asyncio.subprocess``:

* asyncio's subprocess transport kills a still-running child when the transport is closed (at
  loop shutdown): a candidate must outlive the agent that started it, so children are started
  with :class:`subprocess.Popen` in their own session and watched here.
* A blocked ``Popen.wait()`` in a thread cannot be cancelled and would hold up the loop's
  shutdown until the child exits. Exits are awaited through a ``pidfd`` registered with the
  event loop (Linux 5.3+), with a polling fallback, so waiting costs no thread and is cancellable.
* A pid alone names a process only until it is reused. A process we did not start ourselves (an
  orphan found after a restart) is therefore named by ``(pid, start time)``, the start time from
  ``/proc/<pid>/stat``, and re-checked before every signal.
* A child's exit is observed *without reaping it* (``waitid(WNOWAIT)``), so its pid, and with it
  its process group id, cannot be reused while we still signal the group; the caller reaps last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.errors import PermanentError, Refused

PROC = Path("/proc")
#: How much of a log file's end is read to find its last lines.
TAIL_BYTES = 64 * 1024
#: Longest line kept in a log tail (the status caps lines at 4096 characters too).
LINE_MAX = 4096
_POLL_S = 0.05


class SpawnError(PermanentError):
    """A process could not be started at all (interpreter or artifact missing, exec refused)."""


@dataclass(frozen=True)
class ProcId:
    """A process named so that a reused pid is not mistaken for it."""

    pid: int
    start_time: int
    """``/proc/<pid>/stat`` field 22: clock ticks after boot at which the process started."""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, pgid, start_time)`` of ``pid``, or None if there is no such process."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ": split at the
    # last one. Fields after it start with field 3 (state).
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def identify(pid: int) -> ProcId | None:
    """The identity of a live (non-zombie) ``pid``, None if it has exited or never was."""
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X", "x"):
        return None
    return ProcId(pid, stat[2])


def is_running(proc: ProcId) -> bool:
    """Whether exactly that process (same pid, same start time) still runs."""
    return identify(proc.pid) == proc


def cmdline(pid: int) -> list[str] | None:
    """The argument vector of ``pid`` as it was exec'd; None if unreadable or a kernel thread."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def find(match: Callable[[list[str]], bool]) -> list[ProcId]:
    """Live processes whose command line satisfies ``match`` (ours excluded)."""
    found: list[ProcId] = []
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        argv = cmdline(pid)
        if argv is None or not match(argv):
            continue
        ident = identify(pid)
        if ident is not None:
            found.append(ident)
    return found


def tail_lines(path: Path, n: int) -> tuple[str, ...]:
    """The last ``n`` non-empty lines of a log file (empty if there is none)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return ()
    lines = data.decode(errors="replace").splitlines()
    if len(data) >= TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    kept = [line.rstrip()[:LINE_MAX] for line in lines if line.strip()]
    return tuple(kept[-n:])


def signal_name(returncode: int | None) -> str | None:
    """``SIGTERM`` for a ``Popen.returncode`` of -15; None for a normal exit."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def exit_note(returncode: int | None) -> tuple[int | None, tuple[str, ...]]:
    """``(exit_code, extra lines)`` for a ``Popen.returncode``: a signal is said in words.

    ``ProcessOutcome.exit_code`` is None for "killed by a signal", so which signal it was goes
    into the log tail, where a person reading the status will see it.
    """
    name = signal_name(returncode)
    if name is None:
        return returncode, ()
    return None, (f"[harmony-fleet] process ended by {name}",)


def spawn(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str], header: str, truncate: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (a list, never a shell) in a new session, output appended to ``log``.

    Blocking (fork/exec, file opens): call it through ``asyncio.to_thread``. The new session
    means its own process group (so the whole group can be signalled) and no controlling
    terminal (so a terminal hang-up does not reach it).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if truncate else os.O_APPEND)
    try:
        fd = os.open(log, flags, 0o644)
    except OSError as exc:
        raise SpawnError(f"cannot open log {log}: {exc.strerror or exc}") from exc
    try:
        os.write(fd, f"[harmony-fleet] {header}\n".encode())
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env),
        )
    except OSError as exc:
        raise SpawnError(f"cannot start {argv[0]} {argv[1:2]}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


class TrackedProcess:
    """A process we may wait for and signal: our own child, or an orphan verified by identity."""

    def __init__(self, ident: ProcId, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.ident = ident
        self.popen = popen

    @classmethod
    def child(cls, popen: subprocess.Popen[bytes]) -> TrackedProcess:
        stat = _stat(popen.pid)  # a child is never reaped behind our back: its stat is there
        return cls(ProcId(popen.pid, stat[2] if stat else -1), popen)

    @property
    def pid(self) -> int:
        return self.ident.pid

    def running(self) -> bool:
        """Still running? A child is checked without reaping it (see the module docstring)."""
        if self.popen is None:
            return is_running(self.ident)
        if self.popen.returncode is not None:
            return False
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # someone else reaped it
            return False
        return info is None

    def signal_group(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the process's group if it still runs; False if it is gone."""
        if not self.running():
            return False
        return self._killpg(sig)

    def kill_leftovers(self) -> None:
        """SIGKILL what remains of an exited child's group, then reap the child.

        Safe only because the child is not reaped yet: its pid, hence the group id, is still
        taken. For an orphan there is nothing to reap and no such guarantee, so nothing is done.
        """
        if self.popen is None or self.popen.returncode is not None:
            return
        self._killpg(signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            self.popen.wait()

    def _killpg(self, sig: signal.Signals) -> bool:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise Refused(f"not allowed to signal process {self.pid}", code="permission") from exc
        return True

    async def wait(self, limit_s: float | None) -> bool:
        """Wait until the process has exited (not reaped); False when ``limit_s`` passed first."""
        if not self.running():
            return True
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return True
        except OSError:  # no pidfd (old kernel, seccomp): poll instead
            return await self._poll(limit_s)
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not exited.done():
                exited.set_result(None)

        try:
            if not self.running():  # the pid may have been reused between check and open
                return True
            loop.add_reader(fd, readable)
            try:
                async with asyncio.timeout(limit_s):
                    await exited
            except TimeoutError:
                return False
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)
        return True

    async def _poll(self, limit_s: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if limit_s is None else loop.time() + limit_s
        while self.running():
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return True

    async def terminate(self, grace_s: float) -> bool:
        """SIGTERM the group, wait ``grace_s``, then SIGKILL it; True if it was running."""
        if not self.signal_group(signal.SIGTERM):
            return False
        if not await self.wait(grace_s):
            self.signal_group(signal.SIGKILL)
            await self.wait(grace_s)
        return True
