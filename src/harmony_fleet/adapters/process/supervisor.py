"""Keep the agent's main instance running where there is no systemd: ``Restart=always`` in Python.

The upgrade protocol ends with the old agent *exiting* after it swapped ``current`` (ADR-022,
step 8): something must then start ``current`` again, which is now the new version. Under
systemd that is the unit's ``Restart=always``; in process mode it is this supervisor:

* Each start resolves ``current`` anew and runs ``launch.argv(<prefix>/versions/<v>/agent)``,
  the *resolved* path, so the version recorded for a run is exactly the one that was exec'd
  even if ``current`` moves in the same instant.
* Any exit, clean or not, is followed by a restart after a backoff: 0.2 s, doubling up to 5 s,
  back to 0.2 s once a run lasted 30 s (like systemd's ``RestartSec`` with steps). A clean
  exit is a handover after a commit and must be fast; a crash loop must not spin the CPU.
* Every exit is recorded with its version and code (:attr:`Supervisor.history`,
  :meth:`Supervisor.exit_codes`).
* **The post-commit watch** (ADR-022, "After the commit"): a run of the version an upgrade just
  committed is on probation for the window named in ``<run>/post-commit.json``. The supervisor,
  not the new version's code, judges it, through
  :class:`~harmony_fleet.adapters.device.watcher.PostCommitWatcher` (shared with the systemd
  unit's hooks): every failed start or non-clean exit inside the window is counted (in a file,
  so a supervisor restart keeps the count), and a run whose liveness file (``main.alive``,
  rewritten on every heartbeat tick) stops changing is stopped. Silence is timed on the
  supervisor's own monotonic clock from the moment *it* saw the file change, and a run's first
  change gets a generous bound counted from when the supervisor started it: a wall-clock step
  or a slow start on a loaded board is not silence (``core.upgrade.watch``). At
  ``max_failures``, or on silence, it writes the rollback note (the target's exit codes and the
  tail of ``main.log``), points ``current`` back at the previous version and starts that one at
  once; the previous version's agent reports ``RolledBack``.
* The main's stdout and stderr go to ``run_dir/main.log`` (appended; the supervisor adds one
  line per start and per exit). ``run_dir/main.pid`` names the running main with its start
  time (``.pidfile``, the same format as a candidate's): a supervisor that was SIGKILLed leaves
  its main running, and the next supervisor stops that one before it starts its own, so a
  device never runs two mains.
* The main runs in its own session (its own process group); :meth:`Supervisor.stop` sends
  SIGTERM to that group, waits, then SIGKILL. Candidates the main started have sessions of
  their own and are *not* stopped with it, as with a systemd transient unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.device.launch import LaunchSpec, child_env
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.device.watcher import PostCommitWatcher, RunLiveness
from harmony_fleet.adapters.process._proc import (
    TrackedProcess,
    exit_note,
    is_running,
    signal_name,
    spawn,
    tail_lines,
)
from harmony_fleet.adapters.process.pidfile import PidFile
from harmony_fleet.contracts.device_files import RollbackNote
from harmony_fleet.contracts.ids import Version
from harmony_fleet.errors import FleetError, Unavailable

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
RESET_AFTER_S = 30.0
STOP_GRACE_S = 5.0
#: Exits remembered, in all and per version.
HISTORY = 50
PER_VERSION = 10
#: How often a watched run's liveness file is checked, and the log lines kept in a rollback note.
WATCH_POLL_S = 0.5
ROLLBACK_TAIL = 50


@dataclass(frozen=True, kw_only=True)
class ExitRecord:
    """One run of the main instance that ended."""

    version: Version
    pid: int
    exit_code: int | None
    """None when a signal ended it (``signal`` says which)."""
    signal: str | None
    uptime_s: float
    ended_at: float
    """Wall-clock time (``time.time()``) of the exit."""


class Supervisor:
    """Runs ``<prefix>/current/agent`` as the main instance and restarts it whenever it exits."""

    def __init__(
        self,
        layout: AgentLayout,
        launch: LaunchSpec,
        *,
        run_dir: Path,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        reset_after_s: float = RESET_AFTER_S,
        stop_grace_s: float = STOP_GRACE_S,
        env: Mapping[str, str] | None = None,
        watch_poll_s: float = WATCH_POLL_S,
    ) -> None:
        self.layout = layout
        self.launch = launch
        self.run_dir = run_dir
        self.watch_poll_s = watch_poll_s
        self.watcher = PostCommitWatcher(
            layout, run_dir, log_tail=lambda: tail_lines(self.log_file, ROLLBACK_TAIL)
        )
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.reset_after_s = reset_after_s
        self.stop_grace_s = stop_grace_s
        self._extra_env = dict(env or {})
        self.starts = 0
        """Mains started so far (the first start included)."""
        self.restarts = 0
        """Starts that followed an exit (or a failed start)."""
        self.failed_starts = 0
        """Starts that could not happen (no ``current``, exec failed); retried with backoff."""
        self.last_error = ""
        self.history: deque[ExitRecord] = deque(maxlen=HISTORY)
        self.version: Version | None = None
        """The version of the running main (None between runs)."""
        self._starts_by_version: dict[Version, int] = {}
        self._exits: dict[Version, deque[int | None]] = {}
        self._child: TrackedProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        self._restart_now = False

    @property
    def log_file(self) -> Path:
        return self.run_dir / "main.log"

    @property
    def pid_file(self) -> PidFile:
        return PidFile(self.run_dir / "main.pid")

    @property
    def pid(self) -> int | None:
        """The pid of the running main, None between runs."""
        child = self._child
        return child.pid if child is not None and child.running() else None

    @property
    def rollbacks(self) -> list[RollbackNote]:
        """Post-commit rollbacks this supervisor performed (newest last)."""
        return self.watcher.rollbacks

    def exit_codes(self, version: str) -> list[int | None]:
        """The last exit codes of ``version``'s runs, oldest first (None: ended by a signal)."""
        return list(self._exits.get(Version(version), ()))

    # -- control --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Stop a main left by an earlier supervisor, then start supervising (returns at once)."""
        if self._task is not None:
            return
        await asyncio.to_thread(self.run_dir.mkdir, parents=True, exist_ok=True)
        stale = await asyncio.to_thread(self.pid_file.read)
        if stale is not None and await asyncio.to_thread(is_running, stale):
            log.warning("stopping a main left by an earlier supervisor", extra={"pid": stale.pid})
            await TrackedProcess(stale).terminate(self.stop_grace_s)
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="supervisor")

    async def wait_started(self, n: int = 1, *, version: str | None = None) -> None:
        """Wait until ``n`` mains have been started (of ``version``, if given)."""

        def reached() -> bool:
            if version is None:
                return self.starts >= n
            return self._starts_by_version.get(Version(version), 0) >= n

        async with self._changed:
            await self._changed.wait_for(lambda: reached() or self._task_failed())

        if not reached():
            raise Unavailable("the supervisor is not running (never started, or stopped)")

    def _task_failed(self) -> bool:
        return self._task is None or self._task.done()

    async def stop(self) -> ExitRecord | None:
        """Stop supervising: SIGTERM the main's group, wait, SIGKILL; return its last exit."""
        self._stopping.set()
        child = self._child
        if child is not None:
            await child.terminate(self.stop_grace_s)
        task, self._task = self._task, None
        if task is not None:
            await task
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.pid_file.remove)
        return self.history[-1] if self.history else None

    # -- the loop -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        delay = self.backoff_initial_s
        try:
            while not self._stopping.is_set():
                record = await self._run_once()
                if self._stopping.is_set():
                    break
                if record is not None and record.uptime_s >= self.reset_after_s:
                    delay = self.backoff_initial_s  # it ran a while: not a crash loop
                if self._restart_now:  # rolled back: the previous version starts at once
                    self._restart_now, delay = False, self.backoff_initial_s
                await self._note(f"supervisor: restarting in {delay:g} s")
                await wait_event(self._stopping, delay)
                delay = min(delay * 2, self.backoff_max_s)
                if not self._stopping.is_set():
                    self.restarts += 1
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def _run_once(self) -> ExitRecord | None:
        """Start ``current`` and wait for it to end; None if it could not be started."""
        try:
            await asyncio.to_thread(self.watcher.settle)
            v = await asyncio.to_thread(self.layout.current_version)
            if v is None:
                raise FileNotFoundError(f"{self.layout.current_link} does not exist")
            artifact = self.layout.artifact(v)
            liveness = await asyncio.to_thread(self.watcher.run_liveness)
            popen = await asyncio.to_thread(
                spawn,
                self.launch.argv(artifact),
                log=self.log_file,
                env=child_env(self._extra_env),
                header=f"supervisor: starting {v} from {artifact}",
            )
        except (FleetError, OSError) as exc:
            self.failed_starts += 1
            self.last_error = str(exc)
            log.error("cannot start the main instance", extra={"error": str(exc)})
            await self._note(f"supervisor: cannot start: {exc}")
            await self._rolled_back(await asyncio.to_thread(self.watcher.on_failed_start))
            return None
        child = TrackedProcess.child(popen)
        self._child, self.version = child, v
        started = time.monotonic()
        await self._started(v)
        with contextlib.suppress(OSError, FleetError):
            await asyncio.to_thread(self.pid_file.write, child.ident, version=v)
        if self._stopping.is_set():  # stop() came while we were starting it
            await child.terminate(self.stop_grace_s)
        await self._wait_watching(child, v, liveness)
        await asyncio.to_thread(child.kill_leftovers)  # the group's stragglers, then reap
        code, _ = exit_note(popen.returncode)
        record = ExitRecord(
            version=v,
            pid=child.pid,
            exit_code=code,
            signal=signal_name(popen.returncode),
            uptime_s=time.monotonic() - started,
            ended_at=time.time(),
        )
        self._child, self.version = None, None
        self.history.append(record)
        self._exits.setdefault(v, deque(maxlen=PER_VERSION)).append(code)
        how = f"code {code}" if code is not None else f"signal {record.signal}"
        log.info("main exited", extra={"version": v, "exit_code": code, "pid": child.pid})
        await self._note(f"supervisor: {v} (pid {child.pid}) exited with {how}")
        stopping = self._stopping.is_set()
        await self._rolled_back(
            await asyncio.to_thread(self.watcher.on_exit, v, code, record.signal, stopping=stopping)
        )
        return record

    async def _wait_watching(
        self, child: TrackedProcess, v: Version, liveness: RunLiveness
    ) -> None:
        """Wait for the main to end; inside a watch window, stop it when it goes silent."""
        if await asyncio.to_thread(self.watcher.watching, v) is None:
            await child.wait(None)  # not on probation: nothing to poll
            return
        while not await child.wait(self.watch_poll_s):
            if self._stopping.is_set():
                continue
            silent = await asyncio.to_thread(self.watcher.silent, v, liveness)
            if silent is not None:
                await self._note(f"supervisor: post-commit watch: {silent}; stopping it")
                await child.terminate(self.stop_grace_s)

    async def _rolled_back(self, done: RollbackNote | None) -> None:
        if done is None:
            return
        self._restart_now = True
        await self._note(
            f"supervisor: post-commit watch: {done.reason.value}: {done.detail}; "
            f"current is back at {done.previous}"
        )

    async def _started(self, v: Version) -> None:
        async with self._changed:
            self.starts += 1
            self._starts_by_version[v] = self._starts_by_version.get(v, 0) + 1
            self._changed.notify_all()
        log.info("main started", extra={"version": v, "pid": self.pid, "starts": self.starts})

    async def _note(self, line: str) -> None:
        """Append one line to main.log (O_APPEND: it cannot tear the child's own lines)."""

        def append() -> None:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(f"[harmony-fleet] {line}\n")

        with contextlib.suppress(OSError):
            await asyncio.to_thread(append)
