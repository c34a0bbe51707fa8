"""The seam between the upgrade machine and the operating system: :class:`UpgradeExecutor`.

Everything that touches the device during an upgrade (files under the agent's prefix, the
download, the self-test process, the candidate process or systemd unit, the ``current``
symlink) goes through this one Protocol. The driver in ``agent.upgrade`` calls it; a real
implementation lives in ``adapters`` (systemd, or detached processes), and
``harmony_fleet.testing.fake_executor`` records the calls for tests.

Only signatures and contracts here: this module does no I/O.

Errors: methods raise :mod:`harmony_fleet.errors` types. ``stage`` maps them to error codes
(:func:`staging_error_code`); any other method's error is reported with its text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import Progress, UpgradeMarker
from harmony_fleet.core.upgrade.states import ErrorCode
from harmony_fleet.errors import (
    DownloadInterrupted,
    DownloadRejected,
    InsufficientSpace,
    IntegrityError,
    NotFound,
    Timeout,
)

#: Called by ``stage`` as bytes arrive (the driver throttles what reaches the status).
ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, kw_only=True)
class CandidateHandle:
    """A started candidate. ``ref`` is the executor's own name for it (unit name or pid)."""

    upgrade_id: UpgradeId
    version: Version
    ref: str


@dataclass(frozen=True, kw_only=True)
class ProcessOutcome:
    """How a self-test or a candidate ended, with what a person needs to see why."""

    exit_code: int | None
    """None when it was killed by a signal or the code is unknown."""
    log_tail: tuple[str, ...] = ()
    """The last lines it printed (bounded by the executor, typically 50)."""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class UpgradeExecutor(Protocol):
    """What the agent's upgrade driver needs from the device. Every method is idempotent."""

    async def self_heal_layout(self) -> Version:
        """Make ``<prefix>/versions/<v>/`` + ``current -> versions/<v>`` true; return ``v``.

        A first, non-versioned install is moved into ``versions/<running version>/`` so that the
        first rollback has something to return to. Raises ``PermanentError`` for a layout it
        cannot repair.
        """
        ...

    async def current_version(self) -> Version | None:
        """The version ``current`` points at, None if there is no ``current`` yet."""
        ...

    async def stage(self, marker: UpgradeMarker, progress: ProgressCallback) -> None:
        """Preflight (free space), download and verify the SHA-256 into ``versions/<target>/``.

        Resumes a partial download left by an earlier attempt. On success the target folder is
        complete; on failure only staging leftovers exist (``cleanup_staging`` removes them).
        ``marker.source == installed``: no download; the installed version is verified in place
        (``NotFound`` if it is not installed, ``IntegrityError`` if its bytes differ).
        """
        ...

    async def cleanup_staging(self, version: Version) -> None:
        """Remove what staging ``version`` created; never a folder that existed before it."""
        ...

    async def self_test(self, marker: UpgradeMarker, timeout_s: float) -> ProcessOutcome:
        """Run the staged artifact with ``--self-test``; kill it after ``timeout_s``."""
        ...

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        """Start the staged version beside this agent (role candidate, same device id).

        ``current`` is not touched: a power loss now boots the old version.
        """
        ...

    async def candidate_alive(self, handle: CandidateHandle) -> bool:
        """Is the candidate process still running?"""
        ...

    async def candidate_exit(self, handle: CandidateHandle) -> ProcessOutcome:
        """Wait until the candidate ends; its exit code and last log lines."""
        ...

    async def stop_candidate(self, upgrade_id: UpgradeId) -> ProcessOutcome | None:
        """Stop the candidate of ``upgrade_id`` (found by name: works after a restart).

        None if no such candidate runs.
        """
        ...

    async def swap_current(self, version: Version) -> None:
        """Atomically point ``current`` at ``versions/<version>`` and fsync the folder."""
        ...

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
        """Undo an upgrade that did not commit.

        Stops the candidate, points ``current`` at ``previous`` if it moved, and removes
        ``versions/<target>/`` unless it existed before the upgrade (so the tree is
        byte-identical to what it was). Logs of the candidate are kept by the caller.
        """
        ...


def staging_error_code(exc: BaseException) -> ErrorCode:
    """The status error code for an exception raised by :meth:`UpgradeExecutor.stage`."""
    if isinstance(exc, IntegrityError):
        return ErrorCode.INTEGRITY
    if isinstance(exc, InsufficientSpace):
        return ErrorCode.INSUFFICIENT_SPACE
    if isinstance(exc, DownloadRejected):
        return ErrorCode.DOWNLOAD_REJECTED
    if isinstance(exc, DownloadInterrupted | Timeout):
        return ErrorCode.DOWNLOAD_INTERRUPTED
    if isinstance(exc, NotFound):
        return ErrorCode.NOT_INSTALLED  # source "installed", and the version is not
    return ErrorCode.STAGING_FAILED
