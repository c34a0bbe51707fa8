"""The agent's signed-release seam, loaded when an upgrade starts.

:class:`LazyReleases` implements ``core.upgrade.trust.ReleaseTrust`` over
``adapters.tuf.client.TrustedReleases``, imported on the first lookup: python-tuf and
securesystemslib are not carried by an agent that never upgrades. The agent's NATS connection
is handed over once connected (:func:`releases_extension`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harmony_fleet.adapters.http.urls import HTTPS_ONLY, ArtifactAccess
from harmony_fleet.agent.runtime import Agent, Extension
from harmony_fleet.core.upgrade.trust import SignedRelease

if TYPE_CHECKING:
    from harmony_fleet.adapters.tuf.client import TrustedReleases

log = logging.getLogger(__name__)


class LazyReleases:
    """Signed releases for the device whose state dir is ``state_dir`` (see the module)."""

    def __init__(
        self, state_dir: Path, *, mirror: str | None = None, access: ArtifactAccess = HTTPS_ONLY
    ) -> None:
        self.state_dir = state_dir
        self.mirror = mirror
        self.access = access
        self.nc: Any = None
        self._impl: TrustedReleases | None = None

    @property
    def client(self) -> TrustedReleases:
        if self._impl is None:
            from harmony_fleet.adapters.tuf.client import TrustedReleases  # noqa: PLC0415

            self._impl = TrustedReleases(self.state_dir, mirror=self.mirror, access=self.access)
        self._impl.nc = self.nc
        return self._impl

    async def verify(self, version: str) -> SignedRelease:
        """The first call imports python-tuf: counted in ``verify_s`` (every upgrade pays it,
        each one runs in a fresh process)."""
        started = time.monotonic()
        release = await self.client.verify(version)
        took = time.monotonic() - started
        refresh = self.client.last_refresh_s
        log.info(
            "signed target verified",
            extra={
                "target": release.path,
                "verify_s": round(took, 4),
                "refresh_s": round(refresh, 4),
            },
        )
        return release

    async def fetch(self, release: SignedRelease, dest: Path) -> None:
        started = time.monotonic()
        await self.client.fetch(release, dest)
        log.info(
            "signed target fetched",
            extra={
                "target": release.path,
                "fetch_s": round(time.monotonic() - started, 4),
                "refresh_s": round(self.client.last_refresh_s, 4),
            },
        )


def releases_extension(releases: LazyReleases) -> Extension:
    """Give ``releases`` the agent's NATS connection (the client object survives reconnects)."""

    async def connect_releases(_agent: Agent, nc: Any) -> None:
        releases.nc = nc

    return connect_releases
