"""Which artifact is agent version X, for the operator's requesters that name only a version
(a Kubernetes ``Device``'s ``spec.agentVersion``, a rollout's ``--version``).

:class:`SignedReleases` looks the version up as a target of the release repository, verified by
python-tuf's ngclient from a pinned root (``fleet operator --tuf-root root.json``): the marker
then carries the signed SHA-256 and length, and its URL is at most a hint (the device verifies
what it fetches against the same metadata, docs/releases.md). The operator keeps the metadata it
has followed in its ``state_dir`` (rollback protection across lookups, like a device).
:class:`CatalogueReleases` reads the unsigned ``fleet_releases`` catalogue, for an operator not
given a root; the devices still verify against their own pinned root whatever it says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.contracts import Release, release_key
from harmony_fleet.contracts import version as as_version
from harmony_fleet.errors import TemporaryError, Untrusted

log = logging.getLogger(__name__)

#: How ``fleet release`` names the publish step in a spec verdict.
PUBLISH_HINT = "fleet release publish ARTIFACT --version {version}"


#: ``await lookup(version)``: the release that is ``version``, or None if there is none.
ReleaseLookup = Callable[[str], Awaitable[Release | None]]


@dataclass
class CatalogueReleases:
    """``await releases(version)`` from the unsigned ``fleet_releases`` catalogue."""

    kv: FleetKV

    async def __call__(self, version: str) -> Release | None:
        entry = await (await self.kv.releases()).get(release_key(version))
        return entry.value if entry is not None else None


def release_lookup(nc: NatsClient, trust_root: Path | None, state_dir: Path) -> ReleaseLookup:
    """Signed metadata when the operator was given a root, else the unsigned catalogue."""
    if trust_root is None:
        return CatalogueReleases(FleetKV(nc))
    return SignedReleases(nc, trust_root, state_dir)


@dataclass
class SignedReleases:
    """``await releases(version)``: the signed target for ``version``, or None if not signed."""

    nc: NatsClient
    trust_root: Path
    state_dir: Path
    _client: Any = field(default=None, repr=False)

    def _trusted(self) -> Any:
        if self._client is None:  # python-tuf is loaded only by an operator that uses it
            from harmony_fleet.adapters.tuf.client import TrustedReleases  # noqa: PLC0415
            from harmony_fleet.adapters.tuf.pin import pin_root  # noqa: PLC0415

            pin_root(self.state_dir, self.trust_root)
            self._client = TrustedReleases(self.state_dir)
            self._client.nc = self.nc
        return self._client

    async def __call__(self, version: str) -> Release | None:
        from harmony_fleet.adapters.tuf.published import is_published  # noqa: PLC0415

        if not await is_published(self.nc):
            return None  # nothing signed yet: every version is unknown (publish it)
        try:
            signed = await self._trusted().verify(version)
        except Untrusted as exc:
            if exc.reason == "unsigned target":
                return None
            # expired, badly signed, unreachable: not now (the spec is tried again later)
            raise TemporaryError(f"the signed release metadata does not verify: {exc}") from exc
        return Release(
            version=as_version(version),
            artifact_url=signed.url,
            sha256=signed.sha256,
            size=signed.length,
            published_at=time.time(),
            published_by="signed release metadata",
            skip=list(signed.skip),
        )
