"""The files one process on a device leaves for another: the watch notes and the pid files.

They are wire formats like any message: the writer and the reader are different processes,
often of different versions (the old agent writes the watch note that a launcher pinned at
install time reads; a newer supervisor reads the pid file an older one left). So each one has a
``v`` field, a :class:`~harmony_fleet.contracts.Codec`, a JSON Schema (``fleet schema export``)
and a golden fixture. A file written before the field existed has no ``v`` and decodes as
version 1; unknown fields are ignored, so an older reader accepts a newer writer's file.

Where they live and who writes them (``<run>`` is ``<state>/run``)::

    <run>/post-commit.json           WatchNote      the old agent, just before its swap
    <run>/post-commit-failures.json  FailureCount   the launcher, one per failed start
    <run>/post-commit-rollback.json  RollbackNote   the launcher, before it swaps back
    <run>/main.pid                   PidRecord      the process-mode supervisor (the main)
    <run>/candidate-<id>.pid         PidRecord      the process runner (a candidate)

What the notes mean, and how the launcher judges a window, is ``core.upgrade.watch``.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from harmony_fleet.contracts._codec import Codec
from harmony_fleet.contracts.ids import (
    UPGRADE_ID_PATTERN,
    VERSION_PATTERN,
    UpgradeId,
    Version,
)

#: The format version every file here is written with (a file without ``v`` is version 1).
DEVICE_FILES_V = 1

_UpgradeId = Annotated[UpgradeId, msgspec.Meta(pattern=UPGRADE_ID_PATTERN, max_length=64)]
_Version = Annotated[Version, msgspec.Meta(pattern=VERSION_PATTERN, max_length=64)]
#: Default of :attr:`WatchNote.start_grace_s` for a note that does not carry it.
START_GRACE_S = 30.0


class WatchNote(msgspec.Struct, frozen=True, kw_only=True):
    """What the old agent leaves for the launcher at commit time (``post-commit.json``)."""

    v: int = DEVICE_FILES_V
    upgrade_id: _UpgradeId
    previous: _Version
    """The version to return to (still on disk: garbage collection never removes it)."""
    target: _Version
    committed_at: float
    """Unix time of the commit. Shown to people; never compared with another process's clock
    to decide anything (a device's wall clock may step): see ``committed_mono``."""
    window_s: float
    max_failures: int
    """Failed starts of ``target`` inside the window that make a crash loop."""
    stale_after_s: float
    """How long the running ``target`` may leave the liveness file unchanged (0: no check)."""
    start_grace_s: float = START_GRACE_S
    """Before its first liveness touch, the least time a run of ``target`` is given (a newer
    launcher scales it up on a loaded machine: ``core.upgrade.watch.is_silent``)."""
    committed_mono: float | None = None
    """``CLOCK_MONOTONIC`` (seconds since boot, the same in every process) at the commit."""
    boot_id: str | None = None
    """The kernel's boot id at the commit: ``committed_mono`` means nothing after a reboot."""

    @property
    def ends_at(self) -> float:
        """The earliest end of the watch, in wall time (for people: the new main ends it)."""
        return self.committed_at + self.window_s

    def watches(self, version: str | None) -> bool:
        """Is a run of ``version`` on probation while this note exists?"""
        return version == self.target

    def elapsed(self, *, mono: float, boot_id: str | None) -> float | None:
        """Seconds since the commit on the monotonic clock, None when it cannot be known (an
        older writer, another boot). Never from the wall clock, which may have stepped."""
        if self.committed_mono is None or boot_id is None or boot_id != self.boot_id:
            return None
        return max(0.0, mono - self.committed_mono)


class WatchReason(enum.StrEnum):
    """Why the launcher returned the device to the previous version."""

    CRASH_LOOP = "crash_loop"
    NO_HEARTBEAT = "no_heartbeat"


class RollbackNote(msgspec.Struct, frozen=True, kw_only=True):
    """What the launcher leaves for the previous version's agent (``post-commit-rollback.json``)."""

    v: int = DEVICE_FILES_V
    upgrade_id: _UpgradeId
    previous: _Version
    target: _Version
    reason: WatchReason
    detail: str
    exit_codes: tuple[int | None, ...] = ()
    """Exit codes of the target's failed runs, oldest first (None: ended by a signal)."""
    log_tail: tuple[str, ...] = ()
    """The last lines the target printed (its main log), for a person to read why."""
    rolled_back_at: float = 0.0
    """Unix time of the rollback (shown to people only)."""

    @property
    def exit_code(self) -> int | None:
        """The last exit code of the target (what the status shows)."""
        return self.exit_codes[-1] if self.exit_codes else None


class FailureCount(msgspec.Struct, frozen=True, kw_only=True):
    """Failed starts of one watched upgrade so far (kept on disk by the launcher)."""

    v: int = DEVICE_FILES_V
    upgrade_id: _UpgradeId
    exit_codes: tuple[int | None, ...] = ()

    def add(self, exit_code: int | None) -> FailureCount:
        return FailureCount(upgrade_id=self.upgrade_id, exit_codes=(*self.exit_codes, exit_code))


class PidRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A running process of ours, named so that a reused pid is never mistaken for it.

    ``start_time`` is field 22 of ``/proc/<pid>/stat`` (clock ticks since boot): the pair
    (pid, start_time) names one process for the life of the machine.
    """

    v: int = DEVICE_FILES_V
    pid: Annotated[int, msgspec.Meta(gt=0)]
    start_time: Annotated[int, msgspec.Meta(ge=0)]
    version: _Version | None = None
    """The version the process runs."""
    upgrade_id: _UpgradeId | None = None
    """For a candidate: its upgrade."""
    started_at: float = 0.0
    """Unix time of the start (shown to people only)."""


WATCH_NOTE = Codec(WatchNote)
ROLLBACK_NOTE = Codec(RollbackNote)
FAILURE_COUNT = Codec(FailureCount)
PID_RECORD = Codec(PidRecord)
