"""HTTP adapter: downloading an artifact into place, verified, resumable and bounded.

Use :func:`download`; tune it with :class:`DownloadPolicy`; watch it with a callback receiving
:class:`DownloadProgress`. Every failure is one of :mod:`harmony_fleet.errors`, never an httpx
or OS exception. ``docs/downloads.md`` explains the rules and the measured throughput.
"""

from harmony_fleet.adapters.http.downloader import DEFAULT_POLICY, download
from harmony_fleet.adapters.http.policy import DownloadPolicy
from harmony_fleet.adapters.http.progress import DownloadProgress, ProgressCallback
from harmony_fleet.adapters.http.space import FreeSpace, StatvfsFreeSpace

__all__ = [
    "DEFAULT_POLICY",
    "DownloadPolicy",
    "DownloadProgress",
    "FreeSpace",
    "ProgressCallback",
    "StatvfsFreeSpace",
    "download",
]
