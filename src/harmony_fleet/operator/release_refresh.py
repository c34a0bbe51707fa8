"""The operator's release refresh: re-sign the published timestamp and snapshot before they
expire, on a timer, with the online keys (``fleet operator --tuf-online-keys FILE``; off when
not given).

The bucket is the repository: each round reads what is published (``fleet_tuf``), re-signs
what is due (the timestamp within half its lifetime of expiry, the snapshot likewise) and
writes it back, exactly as ``fleet release refresh --keys online.keys.json`` does. The operator
never holds the root or targets keys, so it can keep the repository fresh but cannot sign a
new release or a new root (docs/releases.md). python-tuf is imported when the timer starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.errors import FleetError, NotFound

if TYPE_CHECKING:
    from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)


@dataclass
class ReleaseRefresh:
    """An operator extension: :meth:`__call__` runs until the operator stops."""

    keys_file: Path
    every_s: float = 300.0
    __name__ = "release-refresh"

    async def once(self, nc: NatsClient) -> list[str]:
        """One round: the roles re-signed (none when nothing was due or nothing is published)."""
        from harmony_fleet.adapters.tuf.keys import KeyRing  # noqa: PLC0415
        from harmony_fleet.adapters.tuf.published import refresh_published  # noqa: PLC0415

        keys = KeyRing.load([self.keys_file])
        try:
            done = await refresh_published(nc, keys)
        except NotFound:
            log.debug("no signed release repository published yet")
            return []
        if done:
            log.info("release metadata re-signed", extra={"roles": done})
        return done

    async def __call__(self, operator: Operator, nc: NatsClient) -> None:
        while not operator.stop.is_set():
            try:
                await self.once(nc)
            except FleetError as exc:  # NATS away, a bad key file: say so, try again later
                log.warning("release refresh failed: %s", exc)
            await wait_event(operator.stop, self.every_s)
