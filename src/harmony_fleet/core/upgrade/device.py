"""The seams between the upgrade machine and the device: :class:`DeviceFiles` and
:class:`CandidateRunner`.

Everything an upgrade does on a device is one of two roles:

* **the files** (:class:`DeviceFiles`): the layout under the agent's prefix, the verified
  download into ``versions/<v>/``, the ``current`` swap and the file half of a revert, the
  post-commit watch's notes, artifact hashes and garbage collection. The same on every
  platform: one implementation (``adapters.device.files``);
* **the candidate** (:class:`CandidateRunner`): the self-test, starting the candidate beside
  the running agent, its exit, stopping it. One implementation per platform: detached
  processes (``adapters.process.runner``) or transient systemd units
  (``adapters.systemd.runner``).

The driver in ``agent.upgrade`` calls both; ``harmony_fleet.testing.FakeDevice`` implements
both over one in-memory model for tests. Only signatures and contracts here: no I/O.

Errors: methods raise :mod:`harmony_fleet.errors` types. ``DeviceFiles.stage`` maps them to
error codes (:func:`staging_error_code`); any other method's error is reported with its text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harmony_fleet.contracts.device_files import RollbackNote
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import Progress, UpgradeMarker
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.states import ErrorCode
from harmony_fleet.errors import (
    DownloadInterrupted,
    DownloadRejected,
    InsufficientSpace,
    IntegrityError,
    NotFound,
    Timeout,
    Untrusted,
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


class DeviceFiles(Protocol):
    """The agent's files on the device during an upgrade. Every method is idempotent."""

    @property
    def watched(self) -> bool:
        """Does a launcher on this device act on the watch note (see ``core.upgrade.watch``)?

        Without one the new main does not hold Committed for a window nobody watches.
        """
        ...

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

    async def verify_staged(self, version: Version) -> None:
        """Check, right before the self-test, that ``versions/<version>/`` still holds the bytes
        staging verified (``IntegrityError`` if not); a no-op when staging verified nothing
        this process knows of."""
        ...

    async def cleanup_staging(self, version: Version) -> None:
        """Remove what staging ``version`` created; never a folder that existed before it."""
        ...

    async def swap_current(self, version: Version) -> None:
        """Atomically point ``current`` at ``versions/<version>`` and fsync the folder."""
        ...

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
        """The file half of undoing an upgrade that did not commit (the candidate is stopped
        first, by the runner): ``current`` back at ``previous`` if it moved, and
        ``versions/<target>/`` removed unless it existed before the upgrade, so the tree is
        byte-identical to what it was."""
        ...

    async def arm_watch(self, plan: WatchPlan) -> None:
        """Write the watch note durably (the old agent, just before its swap)."""
        ...

    async def end_watch(self, upgrade_id: UpgradeId) -> None:
        """Remove the watch and rollback notes naming ``upgrade_id`` (idempotent)."""
        ...

    async def since_commit(self, upgrade_id: UpgradeId) -> float | None:
        """Seconds since ``upgrade_id`` committed, from the watch note, on a clock that does not
        step; None when that cannot be known (no note, another boot, an older writer)."""
        ...

    async def rollback_note(self) -> RollbackNote | None:
        """The launcher's note after a post-commit rollback, if there is one."""
        ...

    async def artifact_sha256(self, version: Version) -> str | None:
        """SHA-256 of the installed artifact of ``version`` (None if it is not there)."""
        ...

    async def collect_garbage(self, protect: frozenset[Version], keep: int) -> list[Version]:
        """Remove old versions (never ``protect``, ``current`` or one in use); the removed."""
        ...


class CandidateRunner(Protocol):
    """Runs the staged version: its self-test, then the candidate. One per platform."""

    async def self_test(self, marker: UpgradeMarker, timeout_s: float) -> ProcessOutcome:
        """Run the staged artifact with ``--self-test``; kill it after ``timeout_s``.

        ``NotFound`` if the target is not staged.
        """
        ...

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        """Start the staged version beside this agent (role candidate, same device id).

        ``current`` is not touched: a power loss now boots the old version. Idempotent: a
        candidate of this upgrade that already runs is adopted. ``NotFound`` if not staged.
        """
        ...

    async def candidate_exit(self, handle: CandidateHandle) -> ProcessOutcome:
        """Wait until the candidate ends; its exit code and last log lines."""
        ...

    async def stop_candidate(self, upgrade_id: UpgradeId) -> ProcessOutcome | None:
        """Stop the candidate of ``upgrade_id`` (found by name: works after a restart).

        None if no such candidate runs. Raises if it survives SIGKILL (a revert retries).
        """
        ...


def staging_error_code(exc: BaseException) -> ErrorCode:
    """The status error code for an exception raised by :meth:`DeviceFiles.stage`."""
    if isinstance(exc, Untrusted):
        return ErrorCode.UNTRUSTED
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
