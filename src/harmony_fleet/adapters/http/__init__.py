"""HTTP adapter: downloading an artifact into place, verified, resumable and bounded.

Use :func:`download`; tune it with :class:`DownloadPolicy`; watch it with a callback receiving
:class:`DownloadProgress`. Every failure is one of :mod:`harmony_fleet.errors`, never an httpx
or OS exception. Where bytes may come from (``https``; plain ``http`` for loopback or by opt-in)
is :class:`ArtifactAccess` and :func:`check_artifact_url`; logs show :func:`redact_url`.
``docs/downloads.md`` explains the rules and the measured throughput.

:func:`download` is imported on first use: it brings httpx (and, through it, click and rich),
which an idle agent that never downloads should not carry in memory or pay for at start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harmony_fleet.adapters.http.policy import DEFAULT_POLICY, DownloadPolicy
from harmony_fleet.adapters.http.progress import DownloadProgress, ProgressCallback
from harmony_fleet.adapters.http.space import FreeSpace, StatvfsFreeSpace
from harmony_fleet.adapters.http.urls import (
    HTTPS_ONLY,
    ArtifactAccess,
    check_artifact_url,
    redact_url,
)

__all__ = [
    "DEFAULT_POLICY",
    "HTTPS_ONLY",
    "ArtifactAccess",
    "DownloadPolicy",
    "DownloadProgress",
    "FreeSpace",
    "ProgressCallback",
    "StatvfsFreeSpace",
    "check_artifact_url",
    "download",
    "redact_url",
]

if TYPE_CHECKING:
    from harmony_fleet.adapters.http.downloader import download


def __getattr__(name: str) -> Any:
    if name == "download":
        from harmony_fleet.adapters.http.downloader import download  # noqa: PLC0415

        return download
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
