"""A signed release repository made and published the way ``fleet release`` makes and
publishes one (the same modules: ``adapters.tuf.repository``, ``.published``).

::

    releases = LocalReleases.init(folder)                 # fleet release init
    await releases.publish(nc, artifact, "2.0.0")         # fleet release publish (into NATS)
    releases.sign(artifact, "2.0.0"); releases.mirror(d)  # the same, laid out as a mirror

Every :class:`~harmony_fleet.testing.localfleet.LocalFleet` has one (``fleet.releases``,
``fleet.publish(version)``); a test that must sign what the real tool never would (expired,
wrongly signed) uses :mod:`harmony_fleet.testing.signed_repo`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
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

    def sign(
        self, artifact: Path, version: str, *, min_version: str = "", channel: str = "stable"
    ) -> Release:
        """Sign ``artifact`` as ``version`` offline (what ``publish`` signs, nothing uploaded),
        keeping a copy of it under ``targets/`` for :meth:`mirror`."""
        release, _ = self.repository().add_target(
            artifact, version=version, min_version=min_version, channel=channel
        )
        targets = self.folder / "targets"
        targets.mkdir(exist_ok=True)
        shutil.copyfile(artifact, targets / release.object_name)
        return release

    def mirror(self, dest: Path) -> Path:
        """Lay the repository out in ``dest`` as an HTTPS mirror serves it (``fleet agent run
        --release-mirror URL``: ``URL/metadata/<file>``, ``URL/targets/<sha256>.<path>``):
        every metadata file and every artifact :meth:`sign` kept; the keys stay here."""
        for part in ("metadata", "targets"):
            source = self.folder / part
            if source.is_dir():
                shutil.copytree(source, dest / part, dirs_exist_ok=True)
        return dest
