"""A small signed release repository for tests and benches, built with python-tuf's Metadata API
and published into a server (KV ``fleet_tuf``, object store ``fleet_artifacts``) the way the
device reads it (``adapters.tuf``): consistent snapshots, ``<sha256>.<path>`` target names.

Each method is one thing a release manager (or an attacker who holds some key, or none) does;
the attack suite (``tests/security/test_tuf_attacks.py``) says which. ``fleet release`` is the
release manager's tool; this one lets a test sign what the real tool never would (expired,
wrongly signed, older metadata).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from harmony_fleet.adapters.tuf.fetcher import ARTIFACTS_BUCKET as TUF_ARTIFACTS
from harmony_fleet.adapters.tuf.fetcher import METADATA_BUCKET as TUF_METADATA
from harmony_fleet.core.upgrade.trust import target_path

ROLES = ("root", "targets", "snapshot", "timestamp")


def _in(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


class Repo:
    """Root, targets, snapshot, timestamp (Ed25519); ``targets_keys`` keys, threshold
    ``targets_threshold`` on targets."""

    def __init__(self, *, targets_keys: int = 1, targets_threshold: int = 1) -> None:
        self.keys: dict[str, list[Signer]] = {
            role: [
                CryptoSigner.generate_ed25519()
                for _ in range(targets_keys if role == "targets" else 1)
            ]
            for role in ROLES
        }
        root = Root(expires=_in(365), consistent_snapshot=True)
        for role, signers in self.keys.items():
            for signer in signers:
                root.add_key(signer.public_key, role)
        root.roles["targets"].threshold = targets_threshold
        self.root: Metadata[Root] = Metadata(root)
        self.targets: Metadata[Targets] = Metadata(Targets(expires=_in(90)))
        self.snapshot: Metadata[Snapshot] = Metadata(Snapshot(expires=_in(7)))
        self.timestamp: Metadata[Timestamp] = Metadata(Timestamp(expires=_in(1)))
        self.roots: list[bytes] = []
        self.artifacts: dict[str, bytes] = {}
        self._sign(self.root, self.keys["root"])
        self.roots.append(self.encoded(self.root))

    # -- signing ---------------------------------------------------------------------------------

    @staticmethod
    def encoded(md: Metadata[Any]) -> bytes:
        return md.to_bytes(JSONSerializer(compact=False))

    @staticmethod
    def _sign(md: Metadata[Any], signers: list[Signer]) -> None:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def root_json(self, version: int = 1) -> bytes:
        return self.roots[version - 1]

    def add(self, version: str, data: bytes, *, min_version: str = "") -> TargetFile:
        """``version``'s artifact as a target (custom: version, min_version, channel)."""
        target = TargetFile.from_data(target_path(version), data, ["sha256"])
        target.unrecognized_fields["custom"] = {
            "version": version,
            "min_version": min_version,
            "channel": "stable",
        }
        self.targets.signed.targets[target.path] = target
        self.artifacts[f"{target.hashes['sha256']}.{target.path}"] = data
        return target

    def release(
        self,
        *,
        targets_signers: list[Signer] | None = None,
        timestamp_signers: list[Signer] | None = None,
        timestamp_expires: datetime | None = None,
    ) -> dict[str, bytes]:
        """Bump targets, snapshot and timestamp, sign them; the files to publish."""
        self.targets.signed.version += 1
        self._sign(self.targets, targets_signers or self.keys["targets"])
        self.snapshot.signed.version += 1
        self.snapshot.signed.meta["targets.json"] = MetaFile(version=self.targets.signed.version)
        self._sign(self.snapshot, self.keys["snapshot"])
        self.timestamp.signed.version += 1
        self.timestamp.signed.snapshot_meta = MetaFile(version=self.snapshot.signed.version)
        self.timestamp.signed.expires = timestamp_expires or _in(1)
        self._sign(self.timestamp, timestamp_signers or self.keys["timestamp"])
        return self.files()

    def files(self) -> dict[str, bytes]:
        return {
            f"{self.targets.signed.version}.targets.json": self.encoded(self.targets),
            f"{self.snapshot.signed.version}.snapshot.json": self.encoded(self.snapshot),
            "timestamp.json": self.encoded(self.timestamp),
        }

    def rotate(self, role: str) -> dict[str, bytes]:
        """A new key for ``role`` in a new root, signed by the old root keys and the new ones
        (a root rotation when ``role`` is root); the new root's file."""
        root = self.root.signed
        old_root_signers = list(self.keys["root"])
        for signer in self.keys[role]:
            root.revoke_key(signer.public_key.keyid, role)
        self.keys[role] = [CryptoSigner.generate_ed25519()]
        for signer in self.keys[role]:
            root.add_key(signer.public_key, role)
        root.version += 1
        root.expires = _in(365)
        self._sign(self.root, [*old_root_signers, *(self.keys["root"] if role == "root" else [])])
        data = self.encoded(self.root)
        self.roots.append(data)
        return {f"{root.version}.root.json": data}

    def stale_copy(self) -> tuple[Metadata[Targets], Metadata[Snapshot], Metadata[Timestamp]]:
        return copy.deepcopy((self.targets, self.snapshot, self.timestamp))


async def open_stores(js: Any) -> tuple[Any, Any]:
    """The repository's bucket and object store, as the server provisioned them."""
    return await js.key_value(TUF_METADATA), await js.object_store(TUF_ARTIFACTS)


async def publish(kv: Any, obj: Any, files: dict[str, bytes], artifacts: dict[str, bytes]) -> None:
    for name, data in files.items():
        await kv.put(name, data)
    for name, data in artifacts.items():
        await obj.put(name, data)
