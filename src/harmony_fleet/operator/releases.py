"""Which artifact is agent version X, for the operator's requesters that name only a version
(a Kubernetes ``Device``'s ``spec.agentVersion``, a rollout's ``--version``).

:class:`SignedReleases` looks the version up as a target of the release repository, verified by
python-tuf's ngclient from a pinned root (``fleet operator --tuf-root root.json``): the marker
then carries the signed SHA-256 and length, and its URL is at most a hint (the device verifies
what it fetches against the same metadata, docs/releases.md). The operator keeps the metadata it
has followed in its ``state_dir`` (rollback protection across lookups, like a device).
There is no other source: an operator not given a root resolves no version
(:func:`release_lookup` returns :func:`no_trust_root`, whose error names the flag).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.core.upgrade.trust import SignedRelease
from harmony_fleet.errors import ConfigError, TemporaryError, Untrusted

log = logging.getLogger(__name__)

#: How ``fleet release`` names the publish step in a spec verdict.
PUBLISH_HINT = "fleet release publish ARTIFACT --version {version}"

#: Why an operator without a root resolves no version (the flag it needs, named).
NO_TRUST_ROOT = (
    "a version is resolved only through the signed release metadata: run the operator with "
    "--tuf-root root.json (the release repository's root, docs/releases.md)"
)


#: ``await lookup(version)``: the signed release that is ``version``, or None if there is none.
ReleaseLookup = Callable[[str], Awaitable[SignedRelease | None]]


async def no_trust_root(version: str) -> SignedRelease | None:
    """The lookup of an operator given no ``--tuf-root``: every version is refused, saying why."""
    raise ConfigError(f"cannot resolve version {version}: {NO_TRUST_ROOT}")


def release_lookup(nc: NatsClient, trust_root: Path | None, state_dir: Path) -> ReleaseLookup:
    """Signed metadata when the operator was given a root, else :func:`no_trust_root`."""
    if trust_root is None:
        return no_trust_root
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

    async def __call__(self, version: str) -> SignedRelease | None:
        from harmony_fleet.adapters.tuf.published import is_published  # noqa: PLC0415

        if not await is_published(self.nc):
            return None  # nothing signed yet: every version is unknown (publish it)
        try:
            signed: SignedRelease = await self._trusted().verify(version)
        except Untrusted as exc:
            if exc.reason == "unsigned target":
                return None
            # expired, badly signed, unreachable: not now (the spec is tried again later)
            raise TemporaryError(f"the signed release metadata does not verify: {exc}") from exc
        return signed
