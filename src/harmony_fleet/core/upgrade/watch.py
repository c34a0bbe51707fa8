"""The post-commit watch window: its rules, and what the notes between its judges mean.

After the commit the new version runs as the device's main instance and, for
``timeouts.watch_s``, it is on probation. The judge is **not the new version's own code** (it
may be exactly what is broken) but the launcher that keeps the main instance running: the
process-mode supervisor (``adapters.process.supervisor``), or the systemd unit's hooks run
from a pinned launcher (``adapters.systemd.watch_hook``). Two small files in the agent's run
dir (``<state>/run``) carry what that judge needs, so that nothing depends on the broken
version cooperating (their format is ``contracts.device_files``):

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

Liveness: the main instance writes ``main.alive`` on every heartbeat tick, sent or skipped for
lack of a connection (a NATS outage must never roll a device back). The launcher never compares
that file's time with a clock: wall clocks step (an NTP correction after boot on a board without
a real-time clock), and two processes' clocks are two clocks. It reads the file's state as an
opaque token and remembers, on its *own monotonic* clock, when it last saw the token change. A
run that has changed it once must change it again within ``stale_after_s``, or it *stopped*
heartbeating: the launcher stops it and rolls back.

Slow is not broken. Before its first change a run has :func:`first_touch_within`, counted on the
launcher's clock from the moment it started the process: generous, and scaled from the heartbeat
interval, because on a loaded two-core board fifty agents may be importing at once, and a false
rollback (with the version put on the skip list) is exactly what people complain about. A run
that never changes the file (hung at import) is still caught, only later; a run that exits is
caught at once, by its exit. Silence is the signal, so a broken version cannot fake its way
past it by doing nothing.

The window itself is measured the same way: the new main knows how long ago the commit was from
``CLOCK_MONOTONIC`` (the same in every process until a reboot, see ``WatchNote.elapsed``), never
by subtracting the commit's wall time from its own; after a reboot, or without that, it watches
the whole window again (never shorter than asked for).

Everything here is pure: values and decisions, no clock and no I/O.
"""

from __future__ import annotations

from harmony_fleet.contracts.device_files import (
    START_GRACE_S,
    FailureCount,
    RollbackNote,
    WatchNote,
    WatchReason,
)

__all__ = [
    "START_GRACE_S",
    "FailureCount",
    "RollbackNote",
    "WatchNote",
    "WatchReason",
    "crash_loop",
    "first_touch_bound",
    "first_touch_within",
    "is_failure",
    "is_silent",
    "remaining",
    "stable_for",
    "stale_after",
]

#: The liveness file may be this many heartbeat intervals old before the new main counts as
#: silent, and never less than :data:`LIVENESS_MIN_S` (the first touch comes from a process that
#: is still importing: give it room on a slow board).
LIVENESS_INTERVALS = 4.0
LIVENESS_MIN_S = 5.0
#: A run that never changed the liveness file is silent after this many ``stale_after_s`` (and
#: never before :data:`FIRST_TOUCH_MIN_S`): far beyond any start a loaded board makes by accident.
FIRST_TOUCH_STALE_FACTOR = 12.0
FIRST_TOUCH_MIN_S = 180.0
#: How long the new main's own run must have lasted, the window passed, before it is final.
STABLE_S = 10.0


def stable_for(window_s: float) -> float:
    """The steady run the new main needs at the end of a ``window_s`` watch (never longer)."""
    return min(STABLE_S, window_s)


def stale_after(heartbeat_interval_s: float) -> float:
    """How old the liveness file may get before the main counts as silent."""
    return max(LIVENESS_MIN_S, LIVENESS_INTERVALS * heartbeat_interval_s)


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


def first_touch_bound(stale_after_s: float, start_grace_s: float = START_GRACE_S) -> float:
    """How long a run may take to show its first sign of life, for a liveness bound of
    ``stale_after_s``: the launcher's (process mode) and the unit's ``WatchdogSec`` (systemd)."""
    return max(start_grace_s, FIRST_TOUCH_MIN_S, FIRST_TOUCH_STALE_FACTOR * stale_after_s)


def first_touch_within(note: WatchNote) -> float:
    """How long a run of the note's target may take to change the liveness file the first time."""
    return first_touch_bound(note.stale_after_s, note.start_grace_s)


def is_silent(note: WatchNote, *, run_s: float, quiet_s: float | None) -> bool:
    """Has the running main been silent for longer than the note allows?

    Both durations are on the launcher's own monotonic clock: ``run_s`` since it started this
    run, ``quiet_s`` since it last saw the liveness token change during this run (None: not
    once yet; a change left by the previous main proves nothing). Until its first change a run
    has :func:`first_touch_within`; after it, each change must follow the last within
    ``stale_after_s``.
    """
    if note.stale_after_s <= 0:
        return False
    if quiet_s is None:
        return run_s > first_touch_within(note)
    return quiet_s > note.stale_after_s


def remaining(window_s: float, elapsed_s: float | None) -> float:
    """Seconds of the window left, within ``[0, window_s]``, ``elapsed_s`` after the commit.

    ``elapsed_s`` comes from a clock that does not step (``WatchNote.elapsed``); unknown (None:
    a reboot since, or a note from an older agent) gives the whole window: never shorter than
    asked for, and never ended early by a wall-clock step.
    """
    if window_s <= 0:
        return 0.0
    if elapsed_s is None:
        return window_s
    return min(window_s, max(0.0, window_s - elapsed_s))
