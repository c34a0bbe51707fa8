"""The Kubernetes mode's releases through signed metadata: ``spec.agentVersion`` is looked up
as a target of the release repository, verified by python-tuf's ngclient from a pinned root
(``fleet operator --kubernetes --tuf-root root.json``), never taken from an unsigned catalogue.

The marker then carries the signed SHA-256 and length; its URL is empty (the device fetches the
verified target from the ``fleet_artifacts`` object store itself, docs/releases.md). The
operator keeps the metadata it has followed in ``state_dir`` (rollback protection across
lookups, like a device).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.contracts import Release
from harmony_fleet.contracts import version as as_version
from harmony_fleet.errors import TemporaryError, Untrusted

log = logging.getLogger(__name__)

#: How ``fleet release`` names the publish step in a spec verdict.
PUBLISH_HINT = "fleet release publish ARTIFACT --version {version}"


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
        )
