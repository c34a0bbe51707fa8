"""What every real executor does the same way: the on-disk half of an upgrade and the self-test.

The process executor and the systemd executor differ only in how a *candidate* runs (a detached
process, a transient unit). Everything else, the layout self-heal, the download into
``versions/.staging-<v>/``, the self-test with its timeout, the swap and the file half of a
revert, lives here once, so the two cannot drift apart.

Revert must leave the tree byte-identical to what the upgrade found, so it has to know whether
``versions/<target>/`` existed before the upgrade began, and it must know that after a restart
too. :class:`Staging` therefore writes an ownership note, ``versions/.owner-<target>`` holding the
``upgrade_id``, *before* it creates anything for the target; the note is removed when the swap
commits the version or when the revert or cleanup removes the folder. A folder with no note (or a
note naming another upgrade that then committed) existed before and is never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from harmony_fleet.adapters.http import DEFAULT_POLICY, DownloadPolicy, DownloadProgress, download
from harmony_fleet.adapters.os._fs import fsync_dir, write_atomic
from harmony_fleet.adapters.os.errors import DiskError
from harmony_fleet.adapters.os.layout import OWNER_PREFIX, AgentLayout
from harmony_fleet.contracts.ids import UpgradeId, Version, version
from harmony_fleet.contracts.upgrade import ArtifactSource, Progress, UpgradeMarker
from harmony_fleet.core.upgrade.executor import ProcessOutcome, ProgressCallback
from harmony_fleet.errors import IntegrityError, NotFound

#: Lines of output kept from a self-test or a candidate (what a person reads in the status).
LOG_LINES = 50
_OWNER_PREFIX = OWNER_PREFIX
_KILL_GRACE_S = 2.0


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file (blocking)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Staging:
    """The layout-side operations of an upgrade, async (the file work runs on a thread)."""

    layout: AgentLayout
    running_version: Version
    policy: DownloadPolicy = DEFAULT_POLICY
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    # -- reading --------------------------------------------------------------------------------

    def artifact(self, v: str) -> Path:
        """``versions/<v>/agent``: what the self-test and the candidate run."""
        return self.layout.version_dir(v) / self.layout.artifact_name

    def owner_note(self, v: str) -> Path:
        return self.layout.owner_note(v)

    def owner_of(self, v: str) -> str | None:
        """The upgrade that created ``versions/<v>/``, if one did and has not committed it."""
        try:
            return self.owner_note(v).read_text().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DiskError(f"read the owner note of {v}", exc) from exc

    async def self_heal(self) -> Version:
        return await asyncio.to_thread(self.layout.self_heal, self.running_version)

    async def current_version(self) -> Version | None:
        return await asyncio.to_thread(self.layout.current_version)

    # -- staging --------------------------------------------------------------------------------

    async def stage(self, marker: UpgradeMarker, progress: ProgressCallback) -> None:
        """Download and verify ``marker``'s artifact into ``versions/<target>/``.

        An installed target is kept if its bytes match the marker (a version installed before
        is reused, never overwritten); a partial download is resumed by the HTTP adapter. A
        marker with ``source: installed`` (``fleet rollback``) never downloads: the version must
        be on disk and hash to the marker's SHA-256, or ``NotFound``/``IntegrityError``.
        """
        target = version(marker.target_version)
        async with self._lock:
            if await asyncio.to_thread(self._installed_and_matching, marker):
                return
            if marker.source is ArtifactSource.INSTALLED:
                raise NotFound(
                    f"version {target} is not installed here, and a marker with source "
                    "'installed' downloads nothing"
                )
            await asyncio.to_thread(self._claim, target, marker.upgrade_id)
            dest = self.layout.staging_dir(target) / self.layout.artifact_name
            await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
            policy = self.policy
            if marker.timeouts.download_s > 0:
                policy = _with_deadline(policy, marker.timeouts.download_s)
            await download(
                marker.artifact_url,
                dest,
                marker.sha256,
                marker.size,
                on_progress=lambda p: progress(_progress(p)),
                policy=policy,
            )
            await asyncio.to_thread(self._promote, target, dest)

    def _installed_and_matching(self, marker: UpgradeMarker) -> bool:
        target = version(marker.target_version)
        if not self.layout.has_version(target):
            return False
        path = self.artifact(target)
        actual = sha256_of(path) if path.is_file() else "(missing)"
        if actual == marker.sha256:
            owner = self.owner_of(target)
            if owner is not None and owner != marker.upgrade_id:
                # left by an upgrade that never committed it: this upgrade owns it now
                write_atomic(self.owner_note(target), marker.upgrade_id.encode())
            return True
        raise IntegrityError(f"installed {path}", marker.sha256, actual)

    def _claim(self, target: Version, uid: UpgradeId) -> None:
        try:
            self.layout.versions_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.owner_note(target), uid.encode())
        except OSError as exc:
            raise DiskError(f"claim versions/{target}", exc) from exc

    def _promote(self, target: Version, dest: Path) -> None:
        try:
            os.chmod(dest, 0o755)  # noqa: S103 - an executable artifact, like /usr/bin
            for leftover in dest.parent.iterdir():
                if leftover != dest:  # the downloader's lock and sidecar files
                    leftover.unlink()
            fsync_dir(dest.parent)
        except OSError as exc:
            raise DiskError(f"finish staging {target}", exc) from exc
        self.layout.promote_staged(target)

    async def cleanup(self, v: str) -> None:
        """Remove staging leftovers of ``v``, and ``versions/<v>/`` if an upgrade created it."""
        target = version(v)
        async with self._lock:
            await asyncio.to_thread(self._cleanup, target)

    def _cleanup(self, target: Version) -> None:
        owned = self.owner_of(target) is not None
        if owned and self.layout.current_version() != target:
            self.layout.remove_version(target)  # the staging folder goes with it
        else:
            staging = self.layout.staging_dir(target)
            try:
                if staging.exists():
                    shutil.rmtree(staging)
                    fsync_dir(staging.parent)
            except OSError as exc:
                raise DiskError(f"remove staging of {target}", exc) from exc
        self._drop_note(target)

    # -- commit and revert ------------------------------------------------------------------------

    async def swap(self, v: str) -> None:
        """Point ``current`` at ``versions/<v>``; the version is now committed, not ours to drop."""
        target = version(v)
        await asyncio.to_thread(self.layout.swap_current, target)
        await asyncio.to_thread(self._drop_note, target)

    async def revert(self, *, upgrade_id: UpgradeId, previous: str, target: str) -> None:
        """``current`` back at ``previous``; ``versions/<target>`` gone if this upgrade made it."""
        async with self._lock:
            await asyncio.to_thread(self._revert, upgrade_id, version(previous), version(target))

    def _revert(self, uid: UpgradeId, previous: Version, target: Version) -> None:
        existed = self.owner_of(target) != uid
        self.layout.revert(previous=previous, target=target, target_existed_before=existed)
        if not existed:
            self._drop_note(target)

    def _drop_note(self, target: Version) -> None:
        note = self.owner_note(target)
        try:
            if note.exists():
                note.unlink()
                fsync_dir(note.parent)
        except OSError as exc:
            raise DiskError(f"remove the owner note of {target}", exc) from exc


def _with_deadline(policy: DownloadPolicy, deadline_s: float) -> DownloadPolicy:
    return dataclasses.replace(policy, deadline_s=deadline_s)


def _progress(p: DownloadProgress) -> Progress:
    return Progress(
        bytes_done=p.bytes_done,
        bytes_total=p.bytes_total,
        rate_bps=max(0.0, p.rate_bps),
        retries=p.retries,
    )


async def run_bounded(
    argv: list[str],
    timeout_s: float,
    *,
    env: dict[str, str] | None = None,
    log_lines: int = LOG_LINES,
) -> ProcessOutcome:
    """Run ``argv`` (no shell) to its end or ``timeout_s``; exit code and last output lines.

    The process gets its own session so that, on timeout, the whole group is killed (an artifact
    may have children); SIGTERM first, SIGKILL after a short grace. A signal death is reported
    as ``exit_code=None``, as :class:`ProcessOutcome` documents.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    tail: deque[str] = deque(maxlen=log_lines)
    assert proc.stdout is not None
    stdout = proc.stdout

    async def pump() -> None:
        async for raw in stdout:
            tail.append(raw.decode(errors="replace").rstrip("\n"))

    reader = asyncio.ensure_future(pump())
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        timed_out = True
        await _kill_group(proc)
    finally:
        if proc.returncode is None:  # cancelled: never leave the process behind
            await _kill_group(proc)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, _KILL_GRACE_S)
        reader.cancel()
    code = proc.returncode
    return ProcessOutcome(
        exit_code=code if code is not None and code >= 0 else None,
        log_tail=tuple(tail),
        timed_out=timed_out,
    )


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), _KILL_GRACE_S)
            return
        except TimeoutError:
            continue
