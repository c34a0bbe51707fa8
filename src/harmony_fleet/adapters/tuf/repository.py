"""The release repository: TUF metadata made and signed with python-tuf's Metadata API.

Roles root, targets, snapshot and timestamp, Ed25519 keys, a signature threshold per role,
consistent snapshots (``N.snapshot.json``, ``N.targets.json``, targets as
``<sha256>.<path>``). A target is an agent artifact, path ``harmony-fleet-agent-<version>.pyz``,
with ``custom = {"version", "min_version", "channel"}`` and, when set, ``"skip"`` (the version's
skip list for rollouts) (docs/releases.md).

Every change writes new metadata files into a :class:`~.store.MetadataStore` and nothing
else; publishing them (the ``fleet_tuf`` bucket) is :mod:`~.published`. What needs which key:

* :meth:`Repository.add_target`: targets keys + the online keys (snapshot, timestamp).
* :meth:`Repository.refresh`: the online keys (targets too, if it is near expiry and held).
* :meth:`Repository.rotate`: root keys; for root itself, the old root threshold *and* the new
  keys sign the new root, so a client that trusts the old root follows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import (
    Key,
    Metadata,
    MetaFile,
    Role,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from harmony_fleet.adapters.tuf.keys import ROLES, KeyRing, new_signer
from harmony_fleet.adapters.tuf.store import MetadataStore
from harmony_fleet.contracts.rollout import skip_entry, skip_list
from harmony_fleet.errors import ConfigError, NotFound, Refused

log = logging.getLogger(__name__)

S = TypeVar("S", Root, Timestamp, Snapshot, Targets)


@dataclass(frozen=True)
class Expiry:
    """How long each role's metadata stays valid after it is signed."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def of(self, role: str) -> timedelta:
        value: timedelta = getattr(self, role)
        return value


@dataclass(frozen=True)
class RoleSpec:
    """How many keys a role has and how many of them must sign."""

    keys: int = 1
    threshold: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.threshold <= self.keys:
            raise ConfigError(f"a threshold of {self.threshold} needs 1..{self.keys} keys")


@dataclass(frozen=True)
class Release:
    """One signed target, as ``fleet release list`` shows it."""

    path: str
    version: str
    min_version: str
    channel: str
    length: int
    sha256: str
    skip: tuple[str, ...] = ()
    """The version's skip list (``custom.skip``): device ids and ``label=value`` entries that
    rollouts of this version leave alone (docs/rollouts.md)."""

    @property
    def object_name(self) -> str:
        """The consistent-snapshot file name: the object store's name for the artifact."""
        return f"{self.sha256}.{self.path}"


def target_path(version: str) -> str:
    """The target path of agent ``version``'s artifact."""
    return f"harmony-fleet-agent-{version}.pyz"


def release_of(target: TargetFile) -> Release:
    custom = target.custom if isinstance(target.custom, dict) else {}
    return Release(
        path=target.path,
        version=str(custom.get("version", "")),
        min_version=str(custom.get("min_version", "")),
        channel=str(custom.get("channel", "")),
        length=target.length,
        sha256=target.hashes.get("sha256", ""),
        skip=skip_list(custom.get("skip")),
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Repository:
    """The metadata in ``store`` and the keys in ``keys``; each change writes new files."""

    store: MetadataStore
    keys: KeyRing
    now: Callable[[], datetime] = _utcnow
    expiry: Expiry = field(default_factory=Expiry)

    # -- reading ---------------------------------------------------------------------------
    def _load(self, name: str, kind: type[S]) -> Metadata[S]:
        data = self.store.get(name)
        if data is None:
            raise NotFound(f"the repository has no {name} (run `fleet release init`)")
        try:
            md: Metadata[Any] = Metadata.from_bytes(data)
        except (ValueError, KeyError, TypeError, RepositoryError) as exc:
            raise ConfigError(f"{name} is not TUF metadata: {exc}") from exc
        if not isinstance(md.signed, kind):
            raise ConfigError(f"{name} holds {md.signed.type} metadata")
        return md

    def root_version(self) -> int:
        version = 0
        while self.store.get(f"{version + 1}.root.json") is not None:
            version += 1
        if version == 0:
            raise NotFound("the repository has no root (run `fleet release init`)")
        return version

    def root(self) -> Metadata[Root]:
        return self._load(f"{self.root_version()}.root.json", Root)

    def timestamp(self) -> Metadata[Timestamp]:
        return self._load("timestamp.json", Timestamp)

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return self._load(f"{version}.snapshot.json", Snapshot)

    def targets(self) -> Metadata[Targets]:
        version = self.snapshot().signed.meta["targets.json"].version
        return self._load(f"{version}.targets.json", Targets)

    def releases(self) -> list[Release]:
        """Every signed target, by version."""
        found = [release_of(t) for t in self.targets().signed.targets.values()]
        return sorted(found, key=lambda r: (r.version, r.path))

    def verify(self) -> None:
        """Check that the current timestamp, snapshot and targets are signed by the keys the
        latest root names, and point at each other; :class:`Refused` saying what is wrong."""
        root = self.root()
        try:
            root.verify_delegate("root", root)
            timestamp = self.timestamp()
            root.verify_delegate("timestamp", timestamp)
            snapshot = self.snapshot()
            root.verify_delegate("snapshot", snapshot)
            targets = self.targets()
            root.verify_delegate("targets", targets)
        except RepositoryError as exc:
            raise Refused(f"the repository's metadata does not verify: {exc}") from exc

    # -- signing ---------------------------------------------------------------------------
    def _sign(self, md: Metadata[Any], role: str, root: Root, *, append: bool = False) -> None:
        rule = root.roles[role]
        signers = self.keys.for_role(role, rule.keyids)
        if len(signers) < rule.threshold:
            raise ConfigError(
                f"signing {role} needs {rule.threshold} of its {len(rule.keyids)} key(s); "
                f"{len(signers)} held (give the {role} key file with --keys)"
            )
        if not append:
            md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def _write(self, md: Metadata[Any], name: str) -> None:
        self.store.put(name, md.to_bytes())
        log.info("metadata signed", extra={"file": name, "version": md.signed.version})

    def _renew(self, signed: Signed, role: str, *, bump: bool = True) -> None:
        if bump:
            signed.version += 1
        signed.expires = (self.now() + self.expiry.of(role)).replace(microsecond=0)

    def _resign_snapshot(self, root: Root, targets_version: int | None = None) -> int:
        snapshot = self.snapshot()
        if targets_version is not None:
            snapshot.signed.meta["targets.json"] = MetaFile(targets_version)
        self._renew(snapshot.signed, "snapshot")
        self._sign(snapshot, "snapshot", root)
        self._write(snapshot, f"{snapshot.signed.version}.snapshot.json")
        return snapshot.signed.version

    def _resign_timestamp(self, root: Root, snapshot_version: int | None = None) -> None:
        timestamp = self.timestamp()
        if snapshot_version is not None:
            timestamp.signed.snapshot_meta = MetaFile(snapshot_version)
        self._renew(timestamp.signed, "timestamp")
        self._sign(timestamp, "timestamp", root)
        self._write(timestamp, "timestamp.json")

    def _publish_targets(self, targets: Metadata[Targets], root: Root) -> None:
        self._renew(targets.signed, "targets")
        self._sign(targets, "targets", root)
        self._write(targets, f"{targets.signed.version}.targets.json")
        snapshot_version = self._resign_snapshot(root, targets.signed.version)
        self._resign_timestamp(root, snapshot_version)

    # -- changes ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        store: MetadataStore,
        specs: Mapping[str, RoleSpec] | None = None,
        *,
        now: Callable[[], datetime] = _utcnow,
        expiry: Expiry | None = None,
    ) -> Repository:
        """A new repository (version 1 of every role, no targets) with new keys."""
        if store.get("1.root.json") is not None:
            raise Refused("a repository is already there (1.root.json exists)")
        repo = cls(store, KeyRing(), now=now, expiry=expiry or Expiry())
        specs = dict(specs or {})
        root = Root(expires=now())
        for role in ROLES:
            spec = specs.get(role, RoleSpec())
            root.roles[role] = Role([], spec.threshold)
            for _ in range(spec.keys):
                signer = new_signer()
                repo.keys.add(role, signer)
                root.add_key(signer.public_key, role)
        root_md = Metadata(root)
        repo._renew(root, "root", bump=False)
        repo._sign(root_md, "root", root)
        repo._write(root_md, "1.root.json")
        targets = Metadata(Targets(expires=now()))
        repo._renew(targets.signed, "targets", bump=False)
        repo._sign(targets, "targets", root)
        repo._write(targets, "1.targets.json")
        snapshot = Metadata(Snapshot(expires=now()))
        repo._renew(snapshot.signed, "snapshot", bump=False)
        repo._sign(snapshot, "snapshot", root)
        repo._write(snapshot, "1.snapshot.json")
        timestamp = Metadata(Timestamp(expires=now()))
        repo._renew(timestamp.signed, "timestamp", bump=False)
        repo._sign(timestamp, "timestamp", root)
        repo._write(timestamp, "timestamp.json")
        return repo

    def add_target(
        self,
        artifact: Path,
        *,
        version: str,
        min_version: str = "",
        channel: str = "stable",
        replace: bool = False,
        skip: tuple[str, ...] = (),
    ) -> tuple[Release, str]:
        """Sign ``artifact`` as agent ``version``; return it and ``created``, ``unchanged``,
        ``updated`` (the same bytes, other metadata: a new skip list) or ``replaced``. A
        version already signed with other bytes is refused unless ``replace`` (a version must
        mean the same bytes on every device)."""
        path = target_path(version)
        try:
            target = TargetFile.from_file(path, str(artifact), ["sha256"])
        except OSError as exc:
            raise ConfigError(f"cannot read {artifact}: {exc.strerror or exc}") from exc
        target.unrecognized_fields["custom"] = {
            "version": version,
            "min_version": min_version,
            "channel": channel,
        }
        if skip:
            target.unrecognized_fields["custom"]["skip"] = [skip_entry(e) for e in skip]
        root = self.root().signed
        targets = self.targets()
        old = targets.signed.targets.get(path)
        if old == target:
            return release_of(target), "unchanged"
        same_bytes = old is not None and (old.length, old.hashes) == (target.length, target.hashes)
        if old is not None and not same_bytes and not replace:
            raise Refused(
                f"version {version} is already signed for other bytes (sha256 "
                f"{old.hashes.get('sha256', '')[:12]}…): publish a new version, or pass --replace",
                code="release_exists",
            )
        targets.signed.targets[path] = target
        self._publish_targets(targets, root)
        if old is None:
            return release_of(target), "created"
        return release_of(target), "updated" if same_bytes else "replaced"

    def refresh(self, *, force: bool = False) -> list[str]:
        """Re-sign what expires within half its lifetime (all of it when ``force``): timestamp
        always then, snapshot and targets when due and their keys are held. Return the roles
        re-signed."""
        root = self.root().signed
        now = self.now()

        def due(signed: Signed, role: str) -> bool:
            return force or signed.expires - now < self.expiry.of(role) / 2

        done: list[str] = []
        targets = self.targets()
        targets_keys = self.keys.for_role("targets", root.roles["targets"].keyids)
        if due(targets.signed, "targets") and len(targets_keys) >= root.roles["targets"].threshold:
            self._publish_targets(targets, root)
            return ["targets", "snapshot", "timestamp"]
        if due(targets.signed, "targets"):
            log.warning("targets metadata expires soon: publish or refresh with the targets keys")
        snapshot_version = None
        if due(self.snapshot().signed, "snapshot"):
            snapshot_version = self._resign_snapshot(root)
            done.append("snapshot")
        if snapshot_version is not None or due(self.timestamp().signed, "timestamp"):
            self._resign_timestamp(root, snapshot_version)
            done.append("timestamp")
        return done

    def rotate(self, role: str, *, keys: int | None = None, threshold: int | None = None) -> Root:
        """Replace every key of ``role`` with new ones in a new root version, then re-sign
        what ``role`` signs, so metadata signed with the old keys is refused from now on.

        The new root is signed by the old root threshold (and, for root, by the new keys).
        """
        if role not in ROLES:
            raise ConfigError(f"no role {role!r} (one of {', '.join(ROLES)})")
        root_md = self.root()
        root = root_md.signed
        old_root_rule = Role(list(root.roles["root"].keyids), root.roles["root"].threshold)
        old_keyids = list(root.roles[role].keyids)
        spec = RoleSpec(keys or len(old_keyids), threshold or root.roles[role].threshold)
        old_root_signers = self.keys.for_role("root", old_root_rule.keyids)
        if len(old_root_signers) < old_root_rule.threshold:
            raise ConfigError(
                f"a new root must be signed by {old_root_rule.threshold} of the current root "
                f"keys; {len(old_root_signers)} held (give the root key file with --keys)"
            )
        new = [new_signer() for _ in range(spec.keys)]
        for keyid in old_keyids:
            root.revoke_key(keyid, role)
        for signer in new:
            root.add_key(signer.public_key, role)
        root.roles[role].threshold = spec.threshold
        self._renew(root, "root")
        root_md.signatures.clear()
        for signer in old_root_signers:
            root_md.sign(signer, append=True)
        self.keys.replace(role, new)
        if role == "root":
            for signer in new:
                root_md.sign(signer, append=True)
        self._write(root_md, f"{root.version}.root.json")
        if role == "targets":
            self._publish_targets(self.targets(), root)
        elif role == "snapshot":
            self._resign_timestamp(root, self._resign_snapshot(root))
        elif role == "timestamp":
            self._resign_timestamp(root)
        return root


def key_of(root: Root, role: str) -> list[Key]:
    """The public keys ``root`` names for ``role``."""
    return [root.keys[k] for k in root.roles[role].keyids]
