"""The release repository's signing keys: Ed25519, in files readable by their owner only.

A key file is JSON, ``{"format": FORMAT, "keys": {role: {keyid: PEM}}}``, written 0600 from its
first byte (:func:`~harmony_fleet.adapters.nats.files.write_secret`). ``fleet release init``
writes three, by who should hold them (docs/releases.md):

* ``root.keys.json``: the root keys. Offline: on the release manager's machine or a stick,
  never on the operator. They sign a new root (a key rotation).
* ``targets.keys.json``: the targets keys (the release manager's; they say which artifact is
  which version).
* ``online.keys.json``: the snapshot and timestamp keys, which re-sign the repository's view
  before it expires; the operator may hold this one file (``fleet operator --tuf-online-keys``).

A :class:`KeyRing` is every key of every file it was given. Private keys never appear in a
message, a log line or a ``repr``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey

from harmony_fleet.adapters.nats.files import write_secret
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "harmony-fleet-tuf-keys/1"
ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("snapshot", "timestamp")

#: Which file of a key folder holds which role's keys.
FILE_OF_ROLE = {
    "root": "root.keys.json",
    "targets": "targets.keys.json",
    "snapshot": "online.keys.json",
    "timestamp": "online.keys.json",
}


def new_signer() -> CryptoSigner:
    """A new Ed25519 key pair."""
    return CryptoSigner.generate_ed25519()


def _pem(signer: CryptoSigner) -> str:
    return signer.private_bytes.decode()


def _signer_from_pem(pem: str, where: str) -> CryptoSigner:
    try:
        private = load_pem_private_key(pem.encode(), None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"{where}: not an Ed25519 key")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


@dataclass
class KeyRing:
    """Signers by role and key id (from any number of key files)."""

    signers: dict[str, dict[str, CryptoSigner]] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the keys themselves
        held = {role: sorted(ids) for role, ids in self.signers.items()}
        return f"KeyRing({held})"

    def add(self, role: str, signer: CryptoSigner) -> None:
        self.signers.setdefault(role, {})[signer.public_key.keyid] = signer

    def replace(self, role: str, signers: Iterable[CryptoSigner]) -> None:
        self.signers[role] = {s.public_key.keyid: s for s in signers}

    def for_role(self, role: str, keyids: Iterable[str]) -> list[CryptoSigner]:
        """The signers held for ``role`` among ``keyids`` (those the root lists for it)."""
        held = self.signers.get(role, {})
        return [held[k] for k in keyids if k in held]

    @classmethod
    def load(cls, paths: Iterable[Path]) -> KeyRing:
        ring = cls()
        for path in paths:
            ring.merge(read_key_file(path))
        return ring

    def merge(self, other: KeyRing) -> None:
        for role, signers in other.signers.items():
            for signer in signers.values():
                self.add(role, signer)

    def roles_in(self, roles: Iterable[str]) -> dict[str, dict[str, str]]:
        return {
            role: {kid: _pem(s) for kid, s in self.signers.get(role, {}).items()} for role in roles
        }


def read_key_file(path: Path) -> KeyRing:
    """The keys in ``path``; :class:`ConfigError` naming the file when it is not a key file."""
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"key file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a release key file (format {FORMAT})")
    keys = body.get("keys")
    if not isinstance(keys, Mapping):
        raise ConfigError(f"{path}: no keys")
    ring = KeyRing()
    for role, by_id in keys.items():
        if role not in ROLES or not isinstance(by_id, Mapping):
            raise ConfigError(f"{path}: unknown role {role!r}")
        for keyid, pem in by_id.items():
            signer = _signer_from_pem(str(pem), f"{path} ({role} key {str(keyid)[:8]})")
            ring.add(role, signer)
    return ring


def write_key_file(path: Path, ring: KeyRing, roles: Iterable[str]) -> None:
    """Write ``roles``' keys from ``ring`` to ``path``, 0600 from the first byte."""
    body = {"format": FORMAT, "keys": ring.roles_in(roles)}
    try:
        write_secret(path, json.dumps(body, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write key file {path}: {exc}") from exc
    log.info("key file written", extra={"path": str(path), "roles": sorted(body["keys"])})


def write_key_folder(folder: Path, ring: KeyRing, roles: Iterable[str] = ROLES) -> list[Path]:
    """Write the files of ``folder`` that hold ``roles`` (each file with all its roles)."""
    written: list[Path] = []
    for name in sorted({FILE_OF_ROLE[r] for r in roles}):
        in_file = [r for r, f in FILE_OF_ROLE.items() if f == name]
        path = folder / name
        if path.exists():  # keep roles of the file this ring does not hold
            old = read_key_file(path)
            for role in in_file:
                if role not in ring.signers and role in old.signers:
                    ring.signers[role] = dict(old.signers[role])
        write_key_file(path, ring, in_file)
        written.append(path)
    return written


def key_folder_files(folder: Path) -> list[Path]:
    """The key files present in ``folder``."""
    return [folder / n for n in sorted(set(FILE_OF_ROLE.values())) if (folder / n).exists()]
