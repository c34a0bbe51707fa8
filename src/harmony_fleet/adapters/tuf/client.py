"""The device's TUF client: refresh the signed metadata, look a version up, fetch its bytes.

:class:`TrustedReleases` is what the agent's upgrade flow calls (``core.upgrade.trust`` names
the seam). Every call makes a fresh ngclient ``Updater`` (one ``refresh()`` per updater) on a
worker thread: the pinned root (``<state>/tuf/root.json``, written by ``fleet agent install
--trust-root``) is the bootstrap, and the metadata ngclient keeps (``<state>/tuf/metadata``:
every root it followed, the last timestamp, snapshot and targets) is what makes a rollback of
the metadata or a root chain it has not signed visible. Where the repository lives:

* NATS (the default, ``fleet server``): :class:`~.fetcher.NatsFetcher`, metadata and targets by
  direct gets; the target's bytes come through ngclient (``download_target``: never more than
  the signed length, then the signed hashes);
* an HTTPS mirror (``--release-mirror URL``): metadata under ``URL/metadata/`` through
  :class:`~.mirror.MirrorFetcher` (the artifacts' transport rules and CA), targets under
  ``URL/targets/``, downloaded by the caller with the resumable downloader (``adapters.http``)
  and the signed length and SHA-256.

Errors: python-tuf's are wrapped here into :class:`~harmony_fleet.errors.Untrusted` naming the
attack class (:func:`~.errors.untrusted`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

from harmony_fleet.adapters.http.urls import HTTPS_ONLY, ArtifactAccess, check_artifact_url
from harmony_fleet.adapters.tuf.errors import untrusted
from harmony_fleet.adapters.tuf.fetcher import METADATA_URL, TARGETS_URL, NatsFetcher
from harmony_fleet.adapters.tuf.mirror import MirrorFetcher
from harmony_fleet.adapters.tuf.pin import METADATA_DIR, TUF_DIR, pinned_root
from harmony_fleet.contracts.rollout import skip_list
from harmony_fleet.core.upgrade.trust import SignedRelease, target_path
from harmony_fleet.errors import Untrusted

log = logging.getLogger(__name__)


class TrustedReleases:
    """Signed releases for one device (see the module docstring).

    ``nc`` is the agent's NATS connection (set once it is connected); ``mirror`` an HTTPS base
    URL used instead of NATS. :attr:`last_refresh_s` is what the last lookup took.
    """

    def __init__(
        self, state_dir: Path, *, mirror: str | None = None, access: ArtifactAccess = HTTPS_ONLY
    ) -> None:
        self.root = pinned_root(state_dir)
        self.metadata_dir = state_dir / TUF_DIR / METADATA_DIR
        self.targets_dir = state_dir / TUF_DIR / "targets"
        if mirror:
            check_artifact_url(mirror, access)  # the artifacts' transport rules, for the mirror
        self.access = access
        self.mirror = mirror.rstrip("/") if mirror else None
        self.nc: Any = None
        self.last_refresh_s = 0.0
        """How long the last metadata refresh and lookup took (seconds)."""

    def _updater(self, loop: asyncio.AbstractEventLoop) -> Updater:
        try:
            bootstrap = self.root.read_bytes()
        except OSError as exc:
            raise Untrusted("no trust root", f"{self.root}: {exc.strerror or exc}") from exc
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        fetcher: FetcherInterface | None
        if self.mirror is not None:
            fetcher = MirrorFetcher(self.access)
            meta_url, targets_url = f"{self.mirror}/metadata/", None
        else:
            if self.nc is None:
                raise Untrusted("untrusted metadata", "not connected to NATS yet")
            fetcher, meta_url, targets_url = NatsFetcher(self.nc, loop), METADATA_URL, TARGETS_URL
        try:
            return Updater(
                str(self.metadata_dir),
                meta_url,
                str(self.targets_dir),
                targets_url,
                fetcher=fetcher,
                bootstrap=bootstrap,
            )
        except Exception as exc:
            raise untrusted(exc, "the pinned trust root") from exc

    def _lookup(self, version: str, loop: asyncio.AbstractEventLoop) -> tuple[Updater, TargetFile]:
        started = time.monotonic()
        updater = self._updater(loop)
        try:
            updater.refresh()
        except Exception as exc:
            raise untrusted(exc, "metadata refresh") from exc
        path = target_path(version)
        try:
            info = updater.get_targetinfo(path)
        except Exception as exc:
            raise untrusted(exc, f"looking up {path}") from exc
        self.last_refresh_s = time.monotonic() - started
        if info is None:
            raise Untrusted("unsigned target", f"{path} is not in the signed targets")
        return updater, info

    def _release(self, info: TargetFile) -> SignedRelease:
        sha = info.hashes.get("sha256", "")
        if not sha:
            raise Untrusted("untrusted metadata", f"{info.path} has no sha256 in its signed hashes")
        url = f"{self.mirror}/targets/{sha}.{info.path}" if self.mirror is not None else ""
        raw = info.custom or {}
        custom = {str(k): str(v) for k, v in raw.items() if k != "skip"}
        return SignedRelease(
            path=info.path,
            version=custom.get("version", ""),
            length=info.length,
            sha256=sha,
            min_version=custom.get("min_version", ""),
            url=url,
            skip=skip_list(raw.get("skip")),
        )

    async def verify(self, version: str) -> SignedRelease:
        """Refresh the metadata and return ``version``'s signed target (or raise Untrusted)."""
        loop = asyncio.get_running_loop()
        _updater, info = await asyncio.to_thread(self._lookup, version, loop)
        return self._release(info)

    async def fetch(self, release: SignedRelease, dest: Path) -> None:
        """Download ``release`` from NATS into ``dest`` within its signed length and hashes."""
        loop = asyncio.get_running_loop()

        def work() -> None:
            updater, info = self._lookup(release.version or _version_of(release.path), loop)
            if info.length != release.length or info.hashes.get("sha256") != release.sha256:
                raise Untrusted("mix-and-match", f"{info.path} changed since it was verified")
            try:
                updater.download_target(info, str(dest))
            except Exception as exc:
                raise untrusted(exc, f"target {info.path}") from exc

        await asyncio.to_thread(work)


def _version_of(path: str) -> str:
    return path.removeprefix("harmony-fleet-agent-").removesuffix(".pyz")
