"""Durable file I/O on the device, once: fsync of a folder, atomic writes and symlinks, hashes.

Used by the layout, the staging, the notes, the state store and the installer
(``artifacts/_bootstrap.py`` keeps its own stdlib-only copy on purpose: it runs before the
package is importable).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Make a rename, link or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """A unique sibling of ``final`` for write-then-rename (same folder, same filesystem)."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def replace_symlink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically: readers see the old or the new link, never none."""
    tmp = temp_name(link)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old content or the new, whole
    (with permission bits ``mode``, when given, before it appears under its name)."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a whole file (blocking; raises ``OSError``)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sha256_from(fd).hexdigest()
    finally:
        os.close(fd)


def sha256_from(fd: int) -> hashlib._Hash:
    """SHA-256 of what ``fd`` holds from its offset to its end (left at the end): a hash to go
    on with, for a download that resumes after what is already on disk."""
    hasher = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        hasher.update(view[:n])
    return hasher
