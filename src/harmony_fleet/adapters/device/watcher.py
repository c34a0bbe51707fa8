"""The launcher's side of the post-commit watch: judge every start and exit of a watched main.

The judge of a freshly committed version is never that version's code but the launcher that
keeps the main instance running: the process-mode supervisor (``adapters.process.supervisor``)
asks :class:`PostCommitWatcher`, around every start and exit of the main instance, whether the
window calls for a rollback, and it performs one (note first, then ``current`` back). The
systemd unit drives the same class from its ``ExecStopPost=``/``ExecStartPre=`` hooks
(``adapters.systemd.watch_hook``), each a new process: that works because its counts live in a
file (``notes``), not in memory.

Silence (:class:`RunLiveness`) is judged on the launcher's own monotonic clock: it remembers
when it last saw the liveness file change, and never compares the file's time with a clock
(see ``core.upgrade.watch``). Under systemd the watchdog judges silence instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harmony_fleet.adapters.device import notes
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.contracts.device_files import FailureCount, RollbackNote, WatchNote, WatchReason
from harmony_fleet.contracts.ids import UpgradeId
from harmony_fleet.core.upgrade.watch import crash_loop, is_failure, is_silent
from harmony_fleet.errors import FleetError

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class RunLiveness:
    """Signs of life of one run of the main, timed on the launcher's monotonic clock.

    Made just *before* the run is started, so that the token it keeps is the previous main's:
    the first change after it is this run's first touch.
    """

    def __init__(self, path: Path, *, mono: Clock = time.monotonic) -> None:
        self.path = path
        self._mono = mono
        self.started = mono()
        self._token = notes.liveness_token(path)
        self._changed_at: float | None = None

    def observe(self) -> tuple[float, float | None]:
        """Look at the file now: (seconds this run has lasted, seconds since its last change;
        None if it has not changed once during this run)."""
        token, now = notes.liveness_token(self.path), self._mono()
        if token != self._token:
            self._token, self._changed_at = token, now
        quiet = None if self._changed_at is None else now - self._changed_at
        return now - self.started, quiet


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
        clock: Clock = time.time,
        mono: Clock = time.monotonic,
    ) -> None:
        self.layout = layout
        self.run_dir = run_dir
        self._log_tail = log_tail
        self._clock = clock
        self._mono = mono
        self._silenced: dict[UpgradeId, str] = {}
        self._given_up: set[UpgradeId] = set()
        self.rollbacks: list[RollbackNote] = []
        """Rollbacks this watcher performed (newest last)."""

    def watching(self, version: str | None) -> WatchNote | None:
        """The note that puts a run of ``version`` on probation, unless it was settled.

        The watch lasts until the new main ends it (Succeeded: the note is gone) or a rollback
        settles it, not merely until ``ends_at``: see ``core.upgrade.watch``.
        """
        note = notes.read_watch(self.run_dir)
        if note is None or not note.watches(version) or note.upgrade_id in self._given_up:
            return None
        done = notes.read_rollback(self.run_dir)
        if done is not None and done.upgrade_id == note.upgrade_id:
            return None
        return note

    def settle(self) -> None:
        """Before a start: finish a rollback whose note was written but whose swap was not."""
        note, done = notes.read_watch(self.run_dir), notes.read_rollback(self.run_dir)
        if note is None or done is None or done.upgrade_id != note.upgrade_id:
            return
        try:
            if self.layout.current_version() == note.target:
                self.layout.swap_current(note.previous)
                log.warning("finished an interrupted post-commit rollback", extra=_ctx(note))
        except FleetError as exc:
            log.error("cannot finish a post-commit rollback", extra={"error": str(exc)})

    def run_liveness(self) -> RunLiveness:
        """Call just before starting a run: its signs of life, for :meth:`silent`."""
        return RunLiveness(notes.liveness_file(self.run_dir), mono=self._mono)

    def silent(self, version: str, run: RunLiveness) -> str | None:
        """Has the running ``version`` stopped heartbeating inside its window? Why, if so.

        The launcher then stops the main; its exit (:meth:`on_exit`) performs the rollback.
        """
        note = self.watching(version)
        if note is None:
            return None
        run_s, quiet_s = run.observe()
        if not is_silent(note, run_s=run_s, quiet_s=quiet_s):
            return None
        if quiet_s is None:
            what = f"{note.target} never showed a sign of life in {run_s:.0f} s"
        else:
            what = f"{note.target} sent no heartbeat for over {note.stale_after_s:g} s"
        detail = what + self._since_commit(note)
        self._silenced[note.upgrade_id] = detail
        return detail

    def _since_commit(self, note: WatchNote) -> str:
        elapsed = note.elapsed(mono=self._mono(), boot_id=notes.boot_id())
        return "" if elapsed is None else f", {elapsed:.0f} s after the commit"

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
        notes.write(self.run_dir / notes.FAILURES_FILE, count)
        if silenced is not None:
            return self.roll_back(note, WatchReason.NO_HEARTBEAT, silenced, count.exit_codes)
        log.warning(
            "watched main failed",
            extra={**_ctx(note), "exit_code": exit_code, "failures": len(count.exit_codes)},
        )
        if not crash_loop(note, count):
            return None
        elapsed = note.elapsed(mono=self._mono(), boot_id=notes.boot_id())
        within = "" if elapsed is None else f" within {elapsed:.0f} s of the commit"
        detail = (
            f"{note.target} failed {len(count.exit_codes)} times{within} "
            f"(exit codes {', '.join(str(c) for c in count.exit_codes)})"
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
        notes.write(self.run_dir / notes.ROLLBACK_FILE, done)
        self.layout.swap_current(note.previous)
        self.rollbacks.append(done)
        log.warning("post-commit rollback", extra={**_ctx(note), "reason": reason.value})
        return done

    def _failures(self, note: WatchNote) -> FailureCount:
        count = notes.read_failures(self.run_dir)
        if count is None or count.upgrade_id != note.upgrade_id:
            return FailureCount(upgrade_id=note.upgrade_id)
        return count


def _ctx(note: WatchNote) -> dict[str, str]:
    return {"upgrade_id": note.upgrade_id, "target": note.target, "previous": note.previous}
