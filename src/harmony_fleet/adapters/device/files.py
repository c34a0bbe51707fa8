"""The agent's files during an upgrade: :class:`AgentFiles`, the one ``DeviceFiles``.

Whatever runs the candidate (a detached process, a transient systemd unit), the files are the
same: the layout self-heal, the download into ``versions/.staging-<v>/``, the swap and the file
half of a revert, the post-commit watch's notes (``.notes``), artifact hashes and garbage
collection. They live here once, so no two platforms can drift apart.

Revert must leave the tree byte-identical to what the upgrade found, so it has to know whether
``versions/<target>/`` existed before the upgrade began, and it must know that after a restart
too. :class:`Staging` therefore writes an ownership note, ``versions/.owner-<target>`` holding the
``upgrade_id``, *before* it creates anything for the target; the note is removed when the swap
commits the version or when the revert or cleanup removes the folder. A folder with no note (or a
note naming another upgrade that then committed) existed before and is never removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from harmony_fleet.adapters.device import notes
from harmony_fleet.adapters.device.errors import DiskError
from harmony_fleet.adapters.device.fs import fsync_dir, sha256_of, write_atomic
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.http.policy import DEFAULT_POLICY, DownloadPolicy
from harmony_fleet.adapters.http.progress import DownloadProgress
from harmony_fleet.adapters.http.urls import HTTPS_ONLY, ArtifactAccess
from harmony_fleet.contracts.device_files import RollbackNote, WatchNote
from harmony_fleet.contracts.ids import UpgradeId, Version, version
from harmony_fleet.contracts.upgrade import ArtifactSource, Progress, UpgradeMarker
from harmony_fleet.core.upgrade.device import ProgressCallback
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.trust import ReleaseTrust, SignedRelease, min_version_refusal
from harmony_fleet.errors import IntegrityError, NotFound, TooLarge, Untrusted

log = logging.getLogger(__name__)


class AgentFiles:
    """Implements :class:`~harmony_fleet.core.upgrade.device.DeviceFiles` on the real disk.

    ``running_version`` is the version of the agent that owns it (used to heal a first
    install). ``run_dir`` holds the watch notes (``<state>/run``); ``watched`` says whether a
    launcher acts on them here; ``stale_after_s`` goes into the watch note, with the commit's
    time on ``mono`` (``CLOCK_MONOTONIC``: the same in every process of one boot). ``access``
    says where artifacts may be downloaded from (``--allow-http-artifacts``, ``--artifact-ca``).
    The file work runs on worker threads.

    ``trust`` is the device's view of the signed releases (``core.upgrade.trust``): with it, a
    download's length and SHA-256 come from the verified target, never from the marker. Without
    it every download is refused ("no trust root"): there is no unsigned path.
    """

    def __init__(
        self,
        layout: AgentLayout,
        *,
        running_version: str,
        run_dir: Path,
        watched: bool = False,
        stale_after_s: float = 0.0,
        policy: DownloadPolicy | None = None,
        access: ArtifactAccess = HTTPS_ONLY,
        mono: Callable[[], float] = time.monotonic,
        trust: ReleaseTrust | None = None,
    ) -> None:
        self.layout = layout
        self._mono = mono
        self.running_version = version(running_version)
        self.run_dir = run_dir
        self.watched = watched
        self.stale_after_s = stale_after_s
        self.policy = policy or DEFAULT_POLICY
        self.access = access
        self.trust = trust
        self._signed: dict[Version, SignedRelease] = {}
        self._lock = asyncio.Lock()

    # -- reading --------------------------------------------------------------------------------

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

    async def self_heal_layout(self) -> Version:
        return await asyncio.to_thread(self.layout.self_heal, self.running_version)

    async def current_version(self) -> Version | None:
        return await asyncio.to_thread(self.layout.current_version)

    # -- staging --------------------------------------------------------------------------------

    async def stage(self, marker: UpgradeMarker, progress: ProgressCallback) -> None:
        """Download and verify ``marker``'s artifact into ``versions/<target>/``.

        An installed target is kept if its bytes match the marker (a version installed before
        is reused, never overwritten); a partial download is resumed by the HTTP adapter. A
        marker with ``source: installed`` (``fleet rollback``) never downloads: the version must
        be on disk and hash to the marker's SHA-256, or ``NotFound``/``IntegrityError``. A URL
        the device may not download from (plain ``http`` to another host without the opt-in,
        ``user:password@``) is refused before the download starts: ``DownloadRejected``
        (the URL checked is the one bytes come from: the mirror's, ``--release-mirror``).
        """
        target = version(marker.target_version)
        async with self._lock:
            if marker.source is not ArtifactSource.INSTALLED:
                signed = await self._verified(marker)
                # the marker's URL, size and hash were hints only
                marker = msgspec.structs.replace(
                    marker, sha256=signed.sha256, size=signed.length, artifact_url=signed.url
                )
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
            await self._fetch(marker, dest, progress)
            await asyncio.to_thread(self._promote, target, dest)
        log.info("staged", extra={"version": target, "upgrade_id": marker.upgrade_id})

    async def _verified(self, marker: UpgradeMarker) -> SignedRelease:
        """The signed target of the marker's version (``Untrusted`` without one)."""
        if self.trust is None:
            raise Untrusted(
                "no trust root",
                "this agent has no pinned root (fleet agent install --trust-root root.json) "
                "and takes no unsigned release",
            )
        signed = await self.trust.verify(marker.target_version)
        refusal = min_version_refusal(signed, self.running_version)
        if refusal is not None:
            raise Untrusted("below min_version", refusal.removeprefix("below min_version: "))
        self._signed[version(marker.target_version)] = signed
        return signed

    async def _fetch(self, marker: UpgradeMarker, dest: Path, progress: ProgressCallback) -> None:
        """The verified target's bytes into ``dest``: from a mirror with the resumable
        downloader, else from NATS through the trust (both within the signed length and hash)."""
        signed = self._signed.get(version(marker.target_version))
        if signed is None or self.trust is None:  # stage verifies first: never
            raise Untrusted("no trust root", f"{marker.target_version} was not verified")
        if signed.url:
            await self._download(marker, dest, progress)
        else:
            await self.trust.fetch(signed, dest)

    async def verify_staged(self, version: Version) -> None:
        """The staged artifact still hashes to the signed target staging verified it against."""
        signed = self._signed.get(version)
        if signed is None:
            return
        actual = await self.artifact_sha256(version)
        if actual != signed.sha256:
            raise IntegrityError(f"staged {signed.path}", signed.sha256, actual or "(missing)")

    async def _download(
        self, marker: UpgradeMarker, dest: Path, progress: ProgressCallback
    ) -> None:
        policy = self.policy
        if marker.timeouts.download_s > 0:
            policy = _with_deadline(policy, marker.timeouts.download_s)
        # httpx only when a download starts: an idle agent never carries it.
        from harmony_fleet.adapters.http.downloader import download  # noqa: PLC0415

        try:
            await download(
                marker.artifact_url,
                dest,
                marker.sha256,
                marker.size,
                on_progress=lambda p: progress(_progress(p)),
                policy=policy,
                access=self.access,
            )
        except (IntegrityError, TooLarge) as exc:
            # from a mirror, against the signed length and hash: name the attack
            longer = isinstance(exc, TooLarge) or (
                exc.what == "size"
                and f"{exc.actual}{exc.expected}".isdigit()
                and int(exc.actual) > int(exc.expected)
            )
            raise Untrusted("length exceeded" if longer else "hash mismatch", str(exc)) from exc

    def _installed_and_matching(self, marker: UpgradeMarker) -> bool:
        target = version(marker.target_version)
        if not self.layout.has_version(target):
            return False
        path = self.layout.artifact(target)
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

    async def cleanup_staging(self, version: Version) -> None:
        """Remove staging leftovers of ``v``, and ``versions/<v>/`` if an upgrade created it."""
        target = version
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

    async def swap_current(self, version: Version) -> None:
        """Point ``current`` at ``versions/<v>``; the version is now committed, not ours to drop."""
        target = version
        await asyncio.to_thread(self.layout.swap_current, target)
        await asyncio.to_thread(self._drop_note, target)

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
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

    # -- the post-commit watch, hashes, garbage ---------------------------------------------------

    async def arm_watch(self, plan: WatchPlan) -> None:
        note = WatchNote(
            upgrade_id=plan.upgrade_id,
            previous=plan.previous,
            target=plan.target,
            committed_at=plan.committed_at,
            window_s=plan.window_s,
            max_failures=plan.max_failures,
            stale_after_s=self.stale_after_s,
            committed_mono=self._mono(),
            boot_id=await asyncio.to_thread(notes.boot_id),
        )
        await asyncio.to_thread(notes.write, self.run_dir / notes.WATCH_FILE, note)

    async def end_watch(self, upgrade_id: UpgradeId) -> None:
        await asyncio.to_thread(notes.end_watch, self.run_dir, upgrade_id)

    async def since_commit(self, upgrade_id: UpgradeId) -> float | None:
        note = await asyncio.to_thread(notes.read_watch, self.run_dir)
        if note is None or note.upgrade_id != upgrade_id:
            return None
        return note.elapsed(mono=self._mono(), boot_id=await asyncio.to_thread(notes.boot_id))

    async def rollback_note(self) -> RollbackNote | None:
        return await asyncio.to_thread(notes.read_rollback, self.run_dir)

    async def artifact_sha256(self, version: Version) -> str | None:
        try:
            return await asyncio.to_thread(sha256_of, self.layout.artifact(version))
        except OSError:
            return None

    async def collect_garbage(self, protect: frozenset[Version], keep: int) -> list[Version]:
        return await asyncio.to_thread(self.layout.collect_garbage, protect=protect, keep=keep)


def _with_deadline(policy: DownloadPolicy, deadline_s: float) -> DownloadPolicy:
    return dataclasses.replace(policy, deadline_s=deadline_s)


def _progress(p: DownloadProgress) -> Progress:
    return Progress(
        bytes_done=p.bytes_done,
        bytes_total=p.bytes_total,
        rate_bps=max(0.0, p.rate_bps),
        retries=p.retries,
    )
