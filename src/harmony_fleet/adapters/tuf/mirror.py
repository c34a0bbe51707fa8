"""An ngclient fetcher for an HTTPS mirror of the signed repository (``--release-mirror``).

The artifacts' transport rules hold for the metadata too (``adapters.http.urls``): ``https``
(plain ``http`` only for loopback or with ``--allow-http-artifacts``), the site's CA
(``--artifact-ca``) trusted beside the system's roots, no redirect followed, no URL with a
password; the URL is shown redacted in errors. Metadata is small and bounded by ngclient's own
length limits; the targets' bytes go through the resumable downloader, not through here.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator

import urllib3
from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

from harmony_fleet.adapters.http.urls import (
    HTTPS_ONLY,
    ArtifactAccess,
    check_artifact_url,
    redact_url,
)
from harmony_fleet.errors import FleetError

log = logging.getLogger(__name__)

#: Seconds to connect, and between two reads.
TIMEOUT_S = 30.0


class MirrorFetcher(FetcherInterface):
    """GETs mirror URLs under ``access`` (see the module docstring)."""

    def __init__(self, access: ArtifactAccess = HTTPS_ONLY) -> None:
        self.access = access
        context = ssl.create_default_context()
        if access.ca_file is not None:
            context.load_verify_locations(cafile=access.ca_file)
        self.pool = urllib3.PoolManager(ssl_context=context, retries=False)

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            check_artifact_url(url, self.access)
        except FleetError as exc:
            raise DownloadError(str(exc)) from exc
        shown = redact_url(url)
        try:
            response = self.pool.request(
                "GET", url, preload_content=False, redirect=False, timeout=TIMEOUT_S
            )
        except urllib3.exceptions.HTTPError as exc:
            raise DownloadError(f"{shown}: {type(exc).__name__}") from exc
        if response.status >= 300:
            response.close()
            raise DownloadHTTPError(f"{shown}: HTTP {response.status}", response.status)
        return self._chunks(response, shown)

    @staticmethod
    def _chunks(response: urllib3.BaseHTTPResponse, shown: str) -> Iterator[bytes]:
        try:
            yield from response.stream(64 * 1024)
        except urllib3.exceptions.HTTPError as exc:
            raise DownloadError(f"{shown}: {type(exc).__name__}") from exc
        finally:
            response.release_conn()
