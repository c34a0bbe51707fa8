"""The agent's versioned layout: ``<prefix>/versions/<version>/`` and ``current``.

::

    <prefix>/
      versions/1.4.0/agent        every installed version in its own folder
      versions/1.5.0/agent
      versions/.staging-1.6.0/    a download in progress (never listed as a version)
      versions/.owner-1.6.0       the upgrade that created versions/1.6.0 (until it commits)
      current -> versions/1.5.0   relative symlink: what the service runs
      agent -> current/agent      only after healing a first, non-versioned install

Why it is shaped like this: moving ``current`` is the *one* act that commits an upgrade, and a
symlink replaced with ``os.replace`` is atomic, so after a power loss the device runs either the
old version or the committed one, never half of each. The previous version stays on disk, so a
rollback is a second swap, not a download; :meth:`AgentLayout.collect_garbage` removes the older
ones and never the running, the previous, or one an upgrade is working on.

Self-heal (:meth:`AgentLayout.self_heal`) turns what older installs left into this shape without
a moment where the service has nothing to start: a plain ``<prefix>/agent`` file is hard-linked
into ``versions/<running>/`` before ``<prefix>/agent`` itself becomes a link; a real ``current``
folder is renamed into ``versions/<running>/``; a dangling ``current`` is pointed back at the
running version. Anything else raises :class:`LayoutBroken` naming what is wrong.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from harmony_fleet.adapters.device.errors import DiskError, LayoutBroken
from harmony_fleet.adapters.device.fs import fsync_dir, replace_symlink
from harmony_fleet.contracts.ids import Version, version
from harmony_fleet.errors import InvalidMessage, NotFound

VERSIONS = "versions"
CURRENT = "current"
STAGING_PREFIX = ".staging-"
OWNER_PREFIX = ".owner-"


class AgentLayout:
    """The layout under one prefix (``/opt/harmony-fleet`` on a device, a temp dir in tests)."""

    def __init__(self, prefix: Path, *, artifact_name: str = "agent") -> None:
        self.prefix = prefix
        self.artifact_name = artifact_name
        self.versions_dir = prefix / VERSIONS
        self.current_link = prefix / CURRENT

    # -- reading ------------------------------------------------------------------------------

    def version_dir(self, v: str) -> Path:
        """``versions/<v>``; ``v`` is validated so it can never name a path outside."""
        try:
            return self.versions_dir / version(v)
        except InvalidMessage as exc:
            raise LayoutBroken(self.versions_dir, str(exc)) from exc

    def artifact(self, v: str) -> Path:
        """``versions/<v>/agent``: what the self-test, the candidate and the main run."""
        return self.version_dir(v) / self.artifact_name

    def staged_artifact(self, v: str) -> Path:
        """:meth:`artifact`, which must exist (``NotFound``: ``v`` is not staged)."""
        path = self.artifact(v)
        if not path.is_file():
            raise NotFound(f"version {v} is not staged: {path} does not exist")
        return path

    def staging_dir(self, v: str) -> Path:
        return self.versions_dir / f"{STAGING_PREFIX}{version(v)}"

    def owner_note(self, v: str) -> Path:
        """``versions/.owner-<v>``: present while an upgrade that created ``versions/<v>`` has
        not committed it (written and read by ``adapters.device.files``)."""
        return self.versions_dir / f"{OWNER_PREFIX}{version(v)}"

    def list_versions(self) -> list[Version]:
        """Installed versions (folders under ``versions/``), sorted by name."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(
            Version(p.name)
            for p in self.versions_dir.iterdir()
            if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
        )

    def has_version(self, v: str) -> bool:
        path = self.version_dir(v)
        return path.is_dir() and not path.is_symlink()

    def current_version(self) -> Version | None:
        """The version ``current`` points at; None if there is no ``current``.

        Raises :class:`LayoutBroken` if ``current`` is not a symlink into ``versions/``.
        """
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if self.current_link.exists():
                raise LayoutBroken(self.current_link, "current is not a symlink") from exc
            raise DiskError("read current", exc) from exc
        parts = Path(target).parts
        if len(parts) != 2 or parts[0] != VERSIONS:
            raise LayoutBroken(self.current_link, f"current points at {target!r}, not versions/<v>")
        try:
            return version(parts[1])
        except InvalidMessage as exc:
            raise LayoutBroken(self.current_link, str(exc)) from exc

    # -- changing -------------------------------------------------------------------------------

    def swap_current(self, v: str) -> None:
        """Atomically point ``current`` at ``versions/<v>`` (which must be installed)."""
        if not self.has_version(v):
            raise LayoutBroken(self.version_dir(v), f"version {v} is not installed")
        try:
            replace_symlink(self.current_link, f"{VERSIONS}/{v}")
        except OSError as exc:
            raise DiskError(f"swap current to {v}", exc) from exc

    def promote_staged(self, v: str) -> None:
        """Rename a complete ``versions/.staging-<v>`` to ``versions/<v>`` (atomic)."""
        try:
            os.rename(self.staging_dir(v), self.version_dir(v))
            fsync_dir(self.versions_dir)
        except OSError as exc:
            raise DiskError(f"promote staged {v}", exc) from exc

    def remove_version(self, v: str) -> None:
        """Delete ``versions/<v>`` and its staging leftovers; never the one ``current`` names."""
        if self.current_version() == v:
            raise LayoutBroken(self.version_dir(v), f"refusing to remove {v}: current points at it")
        try:
            for path in (self.version_dir(v), self.staging_dir(v)):
                if path.exists() or path.is_symlink():
                    shutil.rmtree(path)
            if self.versions_dir.is_dir():
                fsync_dir(self.versions_dir)
        except OSError as exc:
            raise DiskError(f"remove version {v}", exc) from exc

    def collect_garbage(self, *, protect: Iterable[str], keep: int) -> list[Version]:
        """Remove old versions; return the ones removed (newest installed are kept first).

        Never removed, whatever ``keep`` says: what ``current`` points at, everything in
        ``protect`` (the running and the previous version), any version an upgrade is working on
        (it has an owner note: staged, under self-test, or a candidate), and staging folders.
        Of the others, the most recently installed are kept until ``keep`` versions remain.
        Safe at any time and idempotent: an interrupted collection leaves whole folders.
        """
        current = self.current_version()
        kept = {v for v in (current, *protect) if v}
        others = [
            v for v in self.list_versions() if v not in kept and not self.owner_note(v).exists()
        ]
        others.sort(key=lambda v: (self.version_dir(v).stat().st_mtime, v), reverse=True)
        room = max(0, keep - sum(1 for v in kept if self.has_version(v)))
        removed = others[room:]
        for v in removed:
            self.remove_version(v)
        return removed

    def revert(self, *, previous: str, target: str, target_existed_before: bool) -> None:
        """Undo an upgrade: ``current`` back at ``previous``; the target's folder removed unless
        it was already there before the upgrade began. Idempotent."""
        if self.current_version() != previous:
            self.swap_current(previous)
        if target != previous and not target_existed_before:
            self.remove_version(target)
        else:
            self._remove_staging(target)

    def _remove_staging(self, v: str) -> None:
        path = self.staging_dir(v)
        if path.exists():
            try:
                shutil.rmtree(path)
                fsync_dir(self.versions_dir)
            except OSError as exc:
                raise DiskError(f"remove staging of {v}", exc) from exc

    # -- self-heal ------------------------------------------------------------------------------

    def self_heal(self, running: str) -> Version:
        """Bring the tree into the versioned shape; return the version ``current`` points at."""
        running_v = version(running)
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            return self._heal(running_v)
        except OSError as exc:
            raise DiskError("layout self-heal", exc) from exc

    def _heal(self, running: Version) -> Version:
        link = self.current_link
        if link.is_symlink():
            current = self.current_version()
            assert current is not None
            if self.has_version(current):
                return current
            if self.has_version(running):  # dangling: point back at what runs
                self.swap_current(running)
                return running
            raise LayoutBroken(link, f"current points at {current}, which is not installed")
        if link.is_dir():  # a real folder: the first install lived in ``current/``
            if self.version_dir(running).exists():
                raise LayoutBroken(link, f"current is a folder and versions/{running} exists too")
            os.rename(link, self.version_dir(running))
            fsync_dir(self.prefix)
            self.swap_current(running)
            return running
        if link.exists():
            raise LayoutBroken(link, "current is neither a symlink nor a folder")
        legacy = self.prefix / self.artifact_name
        if legacy.is_file() and not legacy.is_symlink():
            self._adopt_legacy(legacy, running)
            return running
        if self.has_version(running):  # interrupted heal, or a fresh versioned install
            self.swap_current(running)
            return running
        raise LayoutBroken(self.prefix, "no current, no versions/<running>, no legacy artifact")

    def _adopt_legacy(self, legacy: Path, running: Version) -> None:
        """Move a plain ``<prefix>/agent`` into ``versions/<running>/`` with no gap.

        Hard link first (two names, one file), then ``current``, then ``<prefix>/agent`` becomes
        ``current/agent``: at every step something runnable sits at the old path.
        """
        home = self.version_dir(running)
        home.mkdir(exist_ok=True)
        adopted = home / self.artifact_name
        if not adopted.exists():
            os.link(legacy, adopted)
            fsync_dir(home)
        self.swap_current(running)
        replace_symlink(legacy, f"{CURRENT}/{self.artifact_name}")
