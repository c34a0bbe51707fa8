"""Free disk space, behind a one-method Protocol so tests can claim any number.

A download that fills the disk half-way fails late and can break other services on the device
(a full root filesystem is a reported cause of failed upgrades), so the downloader checks the
room it needs before asking for the body. Real filesystems come from ``os.statvfs``; a test
passes its own :class:`FreeSpace` instead of mounting a tiny filesystem for every case.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

__all__ = ["FreeSpace", "StatvfsFreeSpace"]


class FreeSpace(Protocol):
    def free_bytes(self, path: Path) -> int:
        """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
        ...


class StatvfsFreeSpace:
    """``f_bavail * f_frsize``: the space left for non-root users, as ``df`` shows it."""

    def free_bytes(self, path: Path) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
