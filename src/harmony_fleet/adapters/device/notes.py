"""The post-commit watch's files in the run dir, read and written by both sides.

``core.upgrade.watch`` says what the notes mean and how a window is judged;
``contracts.device_files`` says how they are encoded. This module keeps them in the agent's run
dir (``<state>/run``, outside the prefix that a revert restores)::

    <run>/post-commit.json           WatchNote: written by the old agent before its swap
    <run>/post-commit-failures.json  failed starts counted so far (the launcher's, survives it)
    <run>/post-commit-rollback.json  RollbackNote: written by the launcher before it swaps back
    <run>/main.alive                 overwritten by the main instance on every heartbeat tick

Every note is written atomically (temporary file, fsync, rename, fsync of the folder); a note
that does not decode is treated as absent, with an error in the log. ``main.alive`` is the
exception: it carries no data that must survive a power loss, only the fact that it keeps
changing (:func:`mark_alive`, :func:`liveness_token`), so it is overwritten in place, unsynced.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from pathlib import Path
from typing import TypeVar

from harmony_fleet.adapters.device.errors import DiskError
from harmony_fleet.adapters.device.fs import fsync_dir, write_atomic
from harmony_fleet.contracts import Codec, encode
from harmony_fleet.contracts.device_files import (
    FAILURE_COUNT,
    ROLLBACK_NOTE,
    WATCH_NOTE,
    FailureCount,
    RollbackNote,
    WatchNote,
)
from harmony_fleet.contracts.ids import UpgradeId
from harmony_fleet.errors import InvalidMessage

log = logging.getLogger(__name__)

#: Set (to the launcher's kind) in the environment of a main whose launcher keeps the watch:
#: the installed systemd unit sets ``systemd``. The process-mode supervisor always keeps it.
WATCHED_BY_ENV = "FLEET_POST_COMMIT_WATCH"
#: The run dir's name inside the agent's state dir (notes, liveness, logs and pid files).
RUN_DIR = "run"
WATCH_FILE = "post-commit.json"
FAILURES_FILE = "post-commit-failures.json"
ROLLBACK_FILE = "post-commit-rollback.json"
LIVENESS = "main.alive"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

T = TypeVar("T")
#: A token for "the liveness file does not exist".
NO_TOKEN = b""


def liveness_file(run_dir: Path) -> Path:
    return run_dir / LIVENESS


_ticks = itertools.count(1)
_PID_WIDTH = 10
_TICK_WIDTH = 20
#: The size of what :func:`mark_alive` writes.
LIVENESS_WIDTH = _PID_WIDTH + 1 + _TICK_WIDTH + 1


def mark_alive(path: Path) -> None:
    """Say the main instance is alive: overwrite ``path`` with ``<pid> <counter>``.

    The content changes on every call, so the launcher sees a change whatever the file
    system's timestamp granularity and whatever the wall clock does. It has a fixed width
    (:data:`LIVENESS_WIDTH` bytes) and is written over the old one in place, without truncating
    the file: truncating made each call ~15 times dearer (it is part of every idle main's CPU).
    """
    data = b"%*d %*d\n" % (_PID_WIDTH, os.getpid(), _TICK_WIDTH, next(_ticks))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def liveness_token(path: Path) -> bytes:
    """The liveness file's state as an opaque token: equal tokens, no sign of life between.

    Content and modification time together: a newer agent changes the content, an older one
    only touched the file. The time is never read as a time, only compared for equality.
    """
    try:
        st = path.stat()
        content = path.read_bytes()[:64]
    except OSError:
        return NO_TOKEN
    return b"%d:%d:%d:" % (st.st_mtime_ns, st.st_ino, st.st_size) + content


def boot_id() -> str | None:
    """The kernel's id of this boot (``CLOCK_MONOTONIC`` is comparable only within one)."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def read(path: Path, codec: Codec[T]) -> T | None:
    """Decode the note at ``path``; None if it is absent or does not decode (logged)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("note unreadable", extra={"path": str(path), "error": str(exc)})
        return None
    try:
        return codec.decode(data)
    except InvalidMessage as exc:
        log.error("note ignored", extra={"path": str(path), "error": str(exc)})
        return None


def write(path: Path, value: object) -> None:
    """Write a note durably (the folder is created if needed); ``DiskError`` on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, encode(value))
    except OSError as exc:
        raise DiskError(f"write {path}", exc) from exc


def read_watch(run_dir: Path) -> WatchNote | None:
    return read(run_dir / WATCH_FILE, WATCH_NOTE)


def read_rollback(run_dir: Path) -> RollbackNote | None:
    return read(run_dir / ROLLBACK_FILE, ROLLBACK_NOTE)


def read_failures(run_dir: Path) -> FailureCount | None:
    return read(run_dir / FAILURES_FILE, FAILURE_COUNT)


def end_watch(run_dir: Path, upgrade_id: UpgradeId) -> None:
    """Remove every note that names ``upgrade_id`` (notes of another upgrade stay)."""
    removed = False
    found = (
        (WATCH_FILE, read_watch(run_dir)),
        (FAILURES_FILE, read_failures(run_dir)),
        (ROLLBACK_FILE, read_rollback(run_dir)),
    )
    for name, value in found:
        if value is not None and value.upgrade_id == upgrade_id:
            path = run_dir / name
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise DiskError(f"remove {path}", exc) from exc
            removed = True
    if removed:
        with contextlib.suppress(OSError):
            fsync_dir(run_dir)
