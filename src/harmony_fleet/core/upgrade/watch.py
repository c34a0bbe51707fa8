"""The post-commit watch window: the notes that cross the process boundary, and its rules.

After the commit the new version runs as the device's main instance and, for
``timeouts.watch_s``, it is on probation. The judge is **not the new version's own code** (it
may be exactly what is broken) but the launcher that keeps the main instance running: the
process-mode supervisor (``adapters.executors.supervisor``), or the systemd unit's hooks run
from a pinned launcher (``adapters.systemd.watch_hook``). Two small files in the agent's run
dir (``<state>/run``) carry what that judge needs, so that nothing depends on the broken
version cooperating:

* the **watch note** (:class:`WatchNote`, ``post-commit.json``), written by the *old* agent just
  before it swaps ``current``: the upgrade, the version to return to, when the window ends, how
  many failed starts make a crash loop, how old the liveness file may get;
* the **rollback note** (:class:`RollbackNote`, ``post-commit-rollback.json``), written by the
  launcher *before* it points ``current`` back at the previous version: why, the new version's
  exit codes and last log lines. The previous version's agent turns it into the ``RolledBack``
  status (``post_commit``) and a skip-list entry when it starts.

How long the watch lasts: at least the window, and until the new main has been up, steadily,
for :func:`stable_for` seconds after it. The launcher judges every run of the target for as long
as the watch note exists; the new main removes it when it says Succeeded, which it does only
once the window has passed *and* its own run has lasted that long. A version whose runs never
last (a crash a few seconds into each one, on a machine slow enough that three of them do not
fit in the window) is therefore still caught, and never shown as Succeeded first: "success
shown, then a silent revert" is one of the complaints this design answers.

Liveness: the main instance touches ``main.alive`` on every heartbeat tick, sent or skipped for
lack of a connection (a NATS outage must never roll a device back). Inside the window, once this
run has touched the file, a file older than ``stale_after_s`` means the new main *stopped*
heartbeating: the launcher stops it and rolls back. Before its first touch a run gets the longer
``start_grace_s``: a slow start on a busy board (imports, extraction, three devices starting at
once) is not a silence, and a false rollback is exactly what people complain about. Silence is
the signal, so a broken version cannot fake its way past it by doing nothing.

Everything here is pure: values and decisions, no clock and no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harmony_fleet.contracts.ids import UpgradeId, Version

#: The liveness file may be this many heartbeat intervals old before the new main counts as
#: silent, and never less than :data:`LIVENESS_MIN_S` (the first touch comes from a process that
#: is still importing: give it room on a slow board).
LIVENESS_INTERVALS = 4.0
LIVENESS_MIN_S = 5.0
#: How long a run may take to touch the liveness file the first time.
START_GRACE_S = 30.0
#: How long the new main's own run must have lasted, the window passed, before it is final.
STABLE_S = 10.0


def stable_for(window_s: float) -> float:
    """The steady run the new main needs at the end of a ``window_s`` watch (never longer)."""
    return min(STABLE_S, window_s)


def stale_after(heartbeat_interval_s: float) -> float:
    """How old the liveness file may get before the main counts as silent."""
    return max(LIVENESS_MIN_S, LIVENESS_INTERVALS * heartbeat_interval_s)


@dataclass(frozen=True, kw_only=True)
class WatchNote:
    """What the old agent leaves for the launcher at commit time (``post-commit.json``)."""

    upgrade_id: UpgradeId
    previous: Version
    """The version to return to (still on disk: garbage collection never removes it)."""
    target: Version
    committed_at: float
    """Unix time of the commit; the window is ``[committed_at, committed_at + window_s)``."""
    window_s: float
    max_failures: int
    """Failed starts of ``target`` inside the window that make a crash loop."""
    stale_after_s: float
    """Age of the liveness file that makes the running ``target`` count as silent (0: off)."""
    start_grace_s: float = START_GRACE_S
    """How long a run of ``target`` may take to touch the liveness file the first time."""

    @property
    def ends_at(self) -> float:
        """The earliest end of the watch (the new main ends it after a steady run)."""
        return self.committed_at + self.window_s

    def watches(self, version: Version | str | None) -> bool:
        """Is a run of ``version`` on probation while this note exists?"""
        return version == self.target


class WatchReason(enum.StrEnum):
    """Why the launcher returned the device to the previous version."""

    CRASH_LOOP = "crash_loop"
    NO_HEARTBEAT = "no_heartbeat"


@dataclass(frozen=True, kw_only=True)
class RollbackNote:
    """What the launcher leaves for the previous version's agent (``post-commit-rollback.json``)."""

    upgrade_id: UpgradeId
    previous: Version
    target: Version
    reason: WatchReason
    detail: str
    exit_codes: tuple[int | None, ...] = ()
    """Exit codes of the target's failed runs, oldest first (None: ended by a signal)."""
    log_tail: tuple[str, ...] = ()
    """The last lines the target printed (its main log), for a person to read why."""
    rolled_back_at: float = 0.0

    @property
    def exit_code(self) -> int | None:
        """The last exit code of the target (what the status shows)."""
        return self.exit_codes[-1] if self.exit_codes else None


@dataclass(frozen=True, kw_only=True)
class FailureCount:
    """Failed starts of one watched upgrade so far (kept on disk by the launcher)."""

    upgrade_id: UpgradeId
    exit_codes: tuple[int | None, ...] = ()

    def add(self, exit_code: int | None) -> FailureCount:
        return FailureCount(upgrade_id=self.upgrade_id, exit_codes=(*self.exit_codes, exit_code))


def is_failure(exit_code: int | None, signal: str | None, *, stopping: bool) -> bool:
    """Does this exit of a watched main count as a failed start?

    A clean exit (code 0, no signal) is a handover or an orderly stop; an exit while the
    launcher itself is stopping the main is not the version's fault. Everything else counts:
    a non-zero code, a signal we did not send (OOM killer, segfault).
    """
    if stopping:
        return False
    return signal is not None or exit_code != 0


def crash_loop(note: WatchNote, failures: FailureCount) -> bool:
    return failures.upgrade_id == note.upgrade_id and len(failures.exit_codes) >= note.max_failures


def is_silent(note: WatchNote, *, alive_at: float | None, started_at: float, now: float) -> bool:
    """Has the running main been silent for longer than the note allows?

    ``alive_at`` is the liveness file's last touch (None if it does not exist), ``started_at`` the
    wall-clock start of this run. A touch from before the run (the old main's) proves nothing:
    until this run touches the file it has ``start_grace_s`` from its start, then each touch
    must follow the last within ``stale_after_s``.
    """
    if note.stale_after_s <= 0:
        return False
    if alive_at is None or alive_at < started_at:
        return now - started_at > max(note.start_grace_s, note.stale_after_s)
    return now - alive_at > note.stale_after_s


def remaining(committed_at: float, window_s: float, now: float) -> float:
    """Seconds of the window left at ``now``, within ``[0, window_s]``.

    An unknown time (0, from a record written before the commit time was kept) gives the
    whole window: never shorter than asked for.
    """
    if window_s <= 0:
        return 0.0
    if committed_at <= 0 or now <= 0:
        return window_s
    return min(window_s, max(0.0, committed_at + window_s - now))
