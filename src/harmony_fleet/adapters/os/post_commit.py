"""The post-commit watch on disk: the notes, the liveness file, and both sides that use them.

``core.upgrade.watch`` says what the notes mean and how a window is judged; this module keeps
them in the agent's run dir (``<state>/run``, outside the prefix that a revert restores)::

    <run>/post-commit.json           WatchNote: written by the old agent before its swap
    <run>/post-commit-failures.json  failed starts counted so far (the launcher's, survives it)
    <run>/post-commit-rollback.json  RollbackNote: written by the launcher before it swaps back
    <run>/main.alive                 touched by the main instance on every heartbeat tick

Two users, two classes:

* :class:`PostCommitFiles`, the agent's side (``agent.upgrade.ports.AfterCommit``): arm and end
  the watch, read the launcher's rollback note, hash installed artifacts, collect garbage;
* :class:`PostCommitWatcher`, the launcher's side: the process-mode supervisor asks it, around
  every start and exit of the main instance, whether the window calls for a rollback, and it
  performs one (note first, then ``current`` back). The systemd unit drives the same class from
  its ``ExecStopPost=``/``ExecStartPre=`` hooks (``adapters.systemd.watch_hook``), each a new
  process: that works because its counts live in a file, not in memory.

Every write is atomic (temporary file, fsync, rename, fsync of the folder); a note that does not
decode is treated as absent, with an error in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import msgspec

from harmony_fleet.adapters.os._fs import fsync_dir, write_atomic
from harmony_fleet.adapters.os.errors import DiskError
from harmony_fleet.adapters.os.layout import AgentLayout
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.watch import (
    FailureCount,
    RollbackNote,
    WatchNote,
    WatchReason,
    crash_loop,
    is_failure,
    is_silent,
)
from harmony_fleet.errors import FleetError

log = logging.getLogger("harmony_fleet.adapters.os.post_commit")

#: Set (to the launcher's kind) in the environment of a main whose launcher keeps the watch:
#: the installed systemd unit sets ``systemd``. The process-mode supervisor always keeps it.
WATCHED_BY_ENV = "FLEET_POST_COMMIT_WATCH"
#: The run dir's name inside the agent's state dir (notes, liveness, logs and pid files).
RUN_DIR = "run"
WATCH_NOTE = "post-commit.json"
FAILURES = "post-commit-failures.json"
ROLLBACK_NOTE = "post-commit-rollback.json"
LIVENESS = "main.alive"

T = TypeVar("T")
_encoder = msgspec.json.Encoder()


def liveness_file(run_dir: Path) -> Path:
    return run_dir / LIVENESS


def touch(path: Path) -> None:
    """Mark the main instance alive now (creates the file and its folder if needed)."""
    try:
        path.touch()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def alive_at(run_dir: Path) -> float | None:
    """When the main instance last touched the liveness file (None: never)."""
    try:
        return liveness_file(run_dir).stat().st_mtime
    except OSError:
        return None


def _read(path: Path, kind: type[T]) -> T | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("post-commit note unreadable", extra={"path": str(path), "error": str(exc)})
        return None
    try:
        return msgspec.json.decode(data, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        log.error("post-commit note ignored", extra={"path": str(path), "error": str(exc)})
        return None


def _write(path: Path, value: object) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _encoder.encode(value))
    except OSError as exc:
        raise DiskError(f"write {path}", exc) from exc


def read_watch(run_dir: Path) -> WatchNote | None:
    return _read(run_dir / WATCH_NOTE, WatchNote)


def read_rollback(run_dir: Path) -> RollbackNote | None:
    return _read(run_dir / ROLLBACK_NOTE, RollbackNote)


def end_watch(run_dir: Path, upgrade_id: UpgradeId) -> None:
    """Remove every note that names ``upgrade_id`` (notes of another upgrade stay)."""
    removed = False
    notes: tuple[tuple[str, type[WatchNote | FailureCount | RollbackNote]], ...] = (
        (WATCH_NOTE, WatchNote),
        (FAILURES, FailureCount),
        (ROLLBACK_NOTE, RollbackNote),
    )
    for name, kind in notes:
        path = run_dir / name
        value = _read(path, kind)
        if value is not None and value.upgrade_id == upgrade_id:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise DiskError(f"remove {path}", exc) from exc
            removed = True
    if removed:
        with contextlib.suppress(OSError):
            fsync_dir(run_dir)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class PostCommitFiles:
    """The agent's side of the watch (implements ``agent.upgrade.ports.AfterCommit``).

    ``watched`` says whether a launcher on this device acts on the watch note (the process-mode
    supervisor does); without one, the agent does not hold its status for a window nobody
    watches. ``stale_after_s`` goes into the note: how old ``main.alive`` may get.
    """

    def __init__(
        self, layout: AgentLayout, run_dir: Path, *, stale_after_s: float, watched: bool
    ) -> None:
        self.layout = layout
        self.run_dir = run_dir
        self.stale_after_s = stale_after_s
        self.watched = watched

    async def arm_watch(self, plan: WatchPlan) -> None:
        note = WatchNote(
            upgrade_id=plan.upgrade_id,
            previous=plan.previous,
            target=plan.target,
            committed_at=plan.committed_at,
            window_s=plan.window_s,
            max_failures=plan.max_failures,
            stale_after_s=self.stale_after_s,
        )
        await asyncio.to_thread(_write, self.run_dir / WATCH_NOTE, note)

    async def end_watch(self, upgrade_id: UpgradeId) -> None:
        await asyncio.to_thread(end_watch, self.run_dir, upgrade_id)

    async def rollback_note(self) -> RollbackNote | None:
        return await asyncio.to_thread(read_rollback, self.run_dir)

    async def artifact_sha256(self, version: Version) -> str | None:
        path = self.layout.version_dir(version) / self.layout.artifact_name
        try:
            return await asyncio.to_thread(_sha256, path)
        except OSError:
            return None

    async def collect_garbage(self, protect: frozenset[Version], keep: int) -> list[Version]:
        return await asyncio.to_thread(self.layout.collect_garbage, protect=protect, keep=keep)


class PostCommitWatcher:
    """The launcher's side: judge each start and exit of the main instance against the window.

    Blocking (small file reads and writes): call it from a worker thread. ``log_tail`` returns
    the last lines of the main instance's output, kept in the rollback note.
    """

    def __init__(
        self,
        layout: AgentLayout,
        run_dir: Path,
        *,
        log_tail: Callable[[], Iterable[str]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.layout = layout
        self.run_dir = run_dir
        self._log_tail = log_tail
        self._clock = clock
        self._silenced: dict[UpgradeId, str] = {}
        self._given_up: set[UpgradeId] = set()
        self.rollbacks: list[RollbackNote] = []
        """Rollbacks this watcher performed (newest last)."""

    def watching(self, version: str | None) -> WatchNote | None:
        """The note that puts a run of ``version`` on probation, unless it was settled.

        The watch lasts until the new main ends it (Succeeded: the note is gone) or a rollback
        settles it, not merely until ``ends_at``: see ``core.upgrade.watch``.
        """
        note = read_watch(self.run_dir)
        if note is None or not note.watches(version) or note.upgrade_id in self._given_up:
            return None
        done = read_rollback(self.run_dir)
        if done is not None and done.upgrade_id == note.upgrade_id:
            return None
        return note

    def settle(self) -> None:
        """Before a start: finish a rollback whose note was written but whose swap was not."""
        note, done = read_watch(self.run_dir), read_rollback(self.run_dir)
        if note is None or done is None or done.upgrade_id != note.upgrade_id:
            return
        try:
            if self.layout.current_version() == note.target:
                self.layout.swap_current(note.previous)
                log.warning("finished an interrupted post-commit rollback", extra=_ctx(note))
        except FleetError as exc:
            log.error("cannot finish a post-commit rollback", extra={"error": str(exc)})

    def silent(self, version: str, started_at: float) -> str | None:
        """Has the running ``version`` stopped heartbeating inside its window? Why, if so.

        The launcher then stops the main; its exit (:meth:`on_exit`) performs the rollback.
        """
        note = self.watching(version)
        if note is None:
            return None
        now = self._clock()
        if not is_silent(note, alive_at=alive_at(self.run_dir), started_at=started_at, now=now):
            return None
        detail = (
            f"{note.target} sent no heartbeat for over {note.stale_after_s:g} s, "
            f"{now - note.committed_at:.0f} s after the commit"
        )
        self._silenced[note.upgrade_id] = detail
        return detail

    def on_exit(
        self,
        version: str,
        exit_code: int | None,
        signal: str | None,
        *,
        stopping: bool,
        silence: str | None = None,
    ) -> RollbackNote | None:
        """Count an exit of the main instance; roll back on a crash loop or after a silence.

        ``silence`` says why the launcher's own liveness check ended this run (systemd's
        watchdog, in another process than the one that saw it): a rollback at once, like a
        silence :meth:`silent` found.
        """
        note = self.watching(version)
        if note is None:
            return None
        silenced = self._silenced.pop(note.upgrade_id, None) or silence
        if silenced is None and not is_failure(exit_code, signal, stopping=stopping):
            return None
        count = self._failures(note).add(exit_code)
        _write(self.run_dir / FAILURES, count)
        if silenced is not None:
            return self.roll_back(note, WatchReason.NO_HEARTBEAT, silenced, count.exit_codes)
        log.warning(
            "watched main failed",
            extra={**_ctx(note), "exit_code": exit_code, "failures": len(count.exit_codes)},
        )
        if not crash_loop(note, count):
            return None
        elapsed = self._clock() - note.committed_at
        detail = (
            f"{note.target} failed {len(count.exit_codes)} times within {elapsed:.0f} s of the "
            f"commit (exit codes {', '.join(str(c) for c in count.exit_codes)})"
        )
        return self.roll_back(note, WatchReason.CRASH_LOOP, detail, count.exit_codes)

    def on_failed_start(self) -> RollbackNote | None:
        """``current`` could not be started at all: a failed start of whatever it names."""
        try:
            version = self.layout.current_version()
        except FleetError:
            return None
        return self.on_exit(version or "", None, None, stopping=False)

    def roll_back(
        self, note: WatchNote, reason: WatchReason, detail: str, exit_codes: tuple[int | None, ...]
    ) -> RollbackNote | None:
        """Note first (durable), then ``current`` back at the previous version."""
        if not self.layout.has_version(note.previous):
            # Nothing to return to (removed by hand): keep the target running, say so once.
            self._given_up.add(note.upgrade_id)
            log.error("post-commit rollback impossible: previous not installed", extra=_ctx(note))
            return None
        done = RollbackNote(
            upgrade_id=note.upgrade_id,
            previous=note.previous,
            target=note.target,
            reason=reason,
            detail=detail,
            exit_codes=exit_codes,
            log_tail=tuple(line[:4096] for line in self._log_tail()),
            rolled_back_at=self._clock(),
        )
        _write(self.run_dir / ROLLBACK_NOTE, done)
        self.layout.swap_current(note.previous)
        self.rollbacks.append(done)
        log.warning("post-commit rollback", extra={**_ctx(note), "reason": reason.value})
        return done

    def _failures(self, note: WatchNote) -> FailureCount:
        count = _read(self.run_dir / FAILURES, FailureCount)
        if count is None or count.upgrade_id != note.upgrade_id:
            return FailureCount(upgrade_id=note.upgrade_id)
        return count


def _ctx(note: WatchNote) -> dict[str, str]:
    return {"upgrade_id": note.upgrade_id, "target": note.target, "previous": note.previous}
