"""A signed release repository for a local fleet, made and published the way ``fleet release``
makes and publishes one (the same modules: ``adapters.tuf.repository``, ``.published``).

::

    releases = await signed_releases(fleet, "1.0.0", "2.0.0")   # init + publish what was built
    await fleet.add_device("edge-1", "1.0.0", trust_root=releases.trust_root)
    await releases.publish(fleet.nc, fleet.artifact_dir / manifest.file, "3.0.0")

Every test and the demo can run on signed releases this way; a test that must sign what the
real tool never would (expired, wrongly signed) uses :mod:`harmony_fleet.testing.signed_repo`.
:class:`SignedLocalFleet` does it for every device and upgrade of a fleet (the end-to-end tests'
fleet): its devices pin the root, and a version asked for is published the first time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.tuf.keys import KeyRing, key_folder_files, write_key_folder
from harmony_fleet.adapters.tuf.published import (
    adopt_newer,
    current_names,
    load_published,
    push_metadata,
    put_artifact,
)
from harmony_fleet.adapters.tuf.repository import Release, Repository, RoleSpec
from harmony_fleet.adapters.tuf.store import DirStore
from harmony_fleet.contracts import UpgradeMarker, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LocalDevice, LocalFleet

log = logging.getLogger(__name__)


@dataclass
class LocalReleases:
    """A repository folder (``metadata/``, ``keys/``) as ``fleet release init`` makes it."""

    folder: Path

    @property
    def trust_root(self) -> Path:
        """The root a device pins (``fleet agent install --trust-root``)."""
        return self.folder / "metadata" / "1.root.json"

    @classmethod
    def init(cls, folder: Path, specs: Mapping[str, RoleSpec] | None = None) -> LocalReleases:
        if not (folder / "metadata" / "1.root.json").exists():
            repo = Repository.create(DirStore(folder / "metadata"), specs)
            write_key_folder(folder / "keys", repo.keys)
        return cls(folder)

    def repository(self) -> Repository:
        keys = KeyRing.load(key_folder_files(self.folder / "keys"))
        return Repository(DirStore(self.folder / "metadata"), keys)

    async def publish(
        self,
        nc: NatsClient,
        artifact: Path,
        version: str,
        *,
        min_version: str = "",
        channel: str = "stable",
        skip: tuple[str, ...] = (),
    ) -> Release:
        """What ``fleet release publish ARTIFACT --version VERSION [--skip ...]`` does."""
        repo = self.repository()
        assert isinstance(repo.store, DirStore)
        adopt_newer(repo.store, await load_published(nc))
        release, _ = await asyncio.to_thread(
            functools.partial(
                repo.add_target,
                artifact,
                version=version,
                min_version=min_version,
                channel=channel,
                skip=skip,
            )
        )
        await put_artifact(nc, artifact, release.object_name)
        await push_metadata(nc, repo.store, current_names(repo.store))
        return release


async def signed_releases(
    fleet: LocalFleet, *versions: str, specs: Mapping[str, RoleSpec] | None = None
) -> LocalReleases:
    """A repository in ``fleet.workdir/release`` with ``versions`` (built already) published."""
    releases = LocalReleases.init(fleet.workdir / "release", specs)
    assert fleet.nc is not None, "start the fleet first"
    for version in versions:
        manifest = fleet.artifacts[version]
        await releases.publish(fleet.nc, fleet.artifact_dir / manifest.file, version)
    return releases


class SignedLocalFleet(LocalFleet):
    """A :class:`LocalFleet` on signed releases, as a real fleet runs.

    Its repository (``workdir/release``, made at :meth:`start`) is the one
    :func:`signed_releases` uses. Every device pins its root unless given another
    ``trust_root``; :meth:`request_upgrade` publishes the version through the release tooling
    the first time it is asked for (publishing every built artifact up front costs each test
    an upload per version it never uses), unless ``publish=False``: a version the repository
    never signed. The marker's URL and hash stay what :class:`LocalFleet` writes: hints only.
    """

    @property
    def releases(self) -> LocalReleases:
        return LocalReleases.init(self.workdir / "release")

    async def start(self) -> None:
        await asyncio.to_thread(LocalReleases.init, self.workdir / "release")
        await super().start()

    def operator_args(self) -> list[str]:
        """The operator process resolves versions (rollouts) through the signed metadata."""
        return [
            *super().operator_args(),
            *("--tuf-root", str(self.releases.trust_root)),
            *("--state-dir", str(self.workdir / "operator-state")),
        ]

    async def publish(self, version: str) -> Release:
        """``version``'s signed release, published now if it is not yet (it must be built)."""
        assert self.nc is not None, "start the fleet first"
        releases = self.releases
        for release in releases.repository().releases():
            if release.version == version:
                return release
        artifact = self.artifact_dir / self.artifacts[version].file
        return await releases.publish(self.nc, artifact, version)

    async def add_device(
        self,
        name: str,
        version: str,
        *,
        start: bool = True,
        command_prefix: tuple[str, ...] = (),
        trust_root: Path | None = None,
    ) -> LocalDevice:
        root = trust_root or self.releases.trust_root
        return await super().add_device(
            name, version, start=start, command_prefix=command_prefix, trust_root=root
        )

    async def request_upgrade(
        self,
        device: str,
        version: str,
        *,
        timeouts: UpgradeTimeouts | None = None,
        force: bool = False,
        publish: bool = True,
    ) -> UpgradeMarker:
        if publish:
            await self.publish(version)
        return await super().request_upgrade(device, version, timeouts=timeouts, force=force)
