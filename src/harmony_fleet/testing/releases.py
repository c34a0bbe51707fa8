"""A signed release repository for a local fleet, made and published the way ``fleet release``
makes and publishes one (the same modules: ``adapters.tuf.repository``, ``.published``).

::

    releases = await signed_releases(fleet, "1.0.0", "2.0.0")   # init + publish what was built
    await fleet.add_device("edge-1", "1.0.0", trust_root=releases.trust_root)
    await releases.publish(fleet.nc, fleet.artifact_dir / manifest.file, "3.0.0")

Every test and the demo can run on signed releases this way; a test that must sign what the
real tool never would (expired, wrongly signed) uses :mod:`harmony_fleet.testing.signed_repo`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from harmony_fleet.testing.localfleet import LocalFleet

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
    ) -> Release:
        """What ``fleet release publish ARTIFACT --version VERSION`` does."""
        repo = self.repository()
        assert isinstance(repo.store, DirStore)
        adopt_newer(repo.store, await load_published(nc))
        release, _ = await asyncio.to_thread(
            repo.add_target, artifact, version=version, min_version=min_version, channel=channel
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
