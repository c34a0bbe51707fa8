"""Where the repository's metadata files are: a folder (the release manager's) or memory.

A name is the TUF file name exactly as :mod:`tuf.ngclient` asks for it with consistent
snapshots: ``1.root.json``, ``timestamp.json``, ``3.snapshot.json``, ``5.targets.json``.
Both stores remember what was written since they were made (:attr:`written`), in order, so the
caller can publish exactly that.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: The order files are published in: a client reads timestamp first, so it is written last,
#: when everything it points at is already there.
_ORDER = {"root": 0, "targets": 1, "snapshot": 2, "timestamp": 3}


def role_of(name: str) -> str:
    """``3.snapshot.json`` -> ``snapshot``."""
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else name


def publish_order(names: list[str]) -> list[str]:
    """``names`` in the order they must be published (roots by version, timestamp last)."""

    def key(name: str) -> tuple[int, int]:
        head = name.split(".", 1)[0]
        return (_ORDER.get(role_of(name), 9), int(head) if head.isdigit() else 0)

    return sorted(dict.fromkeys(names), key=key)


class MetadataStore(Protocol):
    written: list[str]

    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, data: bytes) -> None: ...


class MemoryStore:
    """Metadata in a dict (what the operator read from the bucket, or a test's)."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.written: list[str] = []

    def get(self, name: str) -> bytes | None:
        return self.files.get(name)

    def put(self, name: str, data: bytes) -> None:
        self.files[name] = data
        self.written.append(name)


class DirStore:
    """Metadata files in a folder, each replaced atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[str] = []

    def get(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read {self.folder / name}: {exc}") from exc

    def put(self, name: str, data: bytes) -> None:
        path = self.folder / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot write {path}: {exc}") from exc
        self.written.append(name)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.name.endswith(".json"))
