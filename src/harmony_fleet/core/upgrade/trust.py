"""Signed releases on the device: the pure rules (no I/O). The TUF client is ``adapters.tuf``.

The marker is a pointer: it names a version (and the upgrade id and timeouts). What the device
downloads, how many bytes and which SHA-256 they must have, come from the signed metadata: the
version is looked up as the target :func:`target_path`, and its :class:`SignedRelease` replaces
the marker's URL, size and hash, which are hints at most (``ReleaseTrust`` is the seam).

The version floor: the highest version that passed its post-commit watch on this device
(``fx.RaiseFloor`` at Succeeded), or ran as its main outside a watch window (kept in its local
state file). A version rolled back inside its window does not raise it: the device must stay
free to go to the version after the one it left. A target below the floor is a downgrade,
refused (:func:`floor_refusal`) even when it is signed, unless it is a version the device kept
on disk: the post-commit watch's rollback and ``fleet rollback`` stay local and allowed.
Versions are ordered by :func:`version_key` (numbers as numbers, ``1.10.0 > 1.9.0``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

#: The agent artifact's name in the signed targets (what ``fleet artifact build`` makes).
TARGET_PREFIX = "harmony-fleet-agent-"
TARGET_SUFFIX = ".pyz"


def target_path(version: str) -> str:
    """The target path of ``version`` in the signed metadata."""
    return f"{TARGET_PREFIX}{version}{TARGET_SUFFIX}"


@dataclass(frozen=True, kw_only=True)
class SignedRelease:
    """A version as the signed targets metadata describes it (verified, never from a marker)."""

    path: str
    version: str
    length: int
    sha256: str
    min_version: str = ""
    """The lowest version it may upgrade from ("" when any)."""
    url: str = ""
    """Where its bytes are on an HTTPS mirror; "" when they come from NATS."""
    skip: tuple[str, ...] = ()
    """The version's skip list (device ids, ``label=value``): devices rollouts leave alone."""


class ReleaseTrust(Protocol):
    """The device's view of the signed repository (``adapters.tuf.client.TrustedReleases``)."""

    async def verify(self, version: str) -> SignedRelease:
        """Refresh the metadata, return ``version``'s signed target; raise ``Untrusted``."""
        ...

    async def fetch(self, release: SignedRelease, dest: Path) -> None:
        """Write ``release``'s bytes (from NATS) to ``dest``, within its length and hashes."""
        ...


_PART = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a version: numeric parts as numbers, words after numbers (``2.0.0 > 2.0.0rc1``
    is not promised; releases are compared by their numbers)."""
    key: list[tuple[int, int | str]] = []
    for part in _PART.findall(version.split("+", 1)[0]):
        key.append((1, int(part)) if part.isdigit() else (0, part))
    return tuple(key)


def raised_floor(floor: str | None, committed: str) -> str:
    """The floor once ``committed`` has been committed (it never goes down)."""
    if floor is None or version_key(committed) > version_key(floor):
        return committed
    return floor


def floor_refusal(target: str, floor: str | None, *, on_disk: bool) -> str | None:
    """Why ``target`` is refused as a downgrade below ``floor``; None when it may go ahead."""
    if floor is None or on_disk or version_key(target) >= version_key(floor):
        return None
    return (
        f"downgrade below floor: {target} is older than {floor}, the highest version that "
        "succeeded on this device, and is not kept on disk"
    )


def min_version_refusal(release: SignedRelease, running: str) -> str | None:
    """Why the signed target may not be installed over ``running`` (its ``min_version``)."""
    if release.min_version and version_key(running) < version_key(release.min_version):
        return (
            f"below min_version: {release.path} may upgrade only from {release.min_version} or "
            f"later, this device runs {running}"
        )
    return None
