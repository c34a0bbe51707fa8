"""Which devices the operator admits: the identities bucket, followed (docs/security.md).

A heartbeat on ``fleet.D.heartbeat`` can only come from the holder of D's credentials, the
operator or the admin (permissions.py); the operator still admits D only while D has a *live
identity*: credentials were issued to D and not revoked (``fleet_identities``, written where
credentials are issued: :mod:`~harmony_fleet.adapters.nats.identities`). So a heartbeat or a
status for a name never issued (published with an admin's or operator's credentials, or by
mistake) does not enter the registry, and a revoked device leaves it.

A simulator's credential (role ``sim``, only on a dev/test server: docs/sim.md) is an identity
too, named ``sim-<something>``: while one is live, every ``sim-`` device id is admitted (the
simulated devices; no real device is ever issued such an id).

``--admit any`` admits every device: for an open server (``fleet server --insecure``), where no
credentials are issued at all. The default is ``issued`` when the operator itself holds
credentials, ``any`` when it connects without any.
"""

from __future__ import annotations

import enum
import logging

from harmony_fleet.contracts.identity import DeviceIdentity
from harmony_fleet.contracts.subjects import is_simulated

log = logging.getLogger(__name__)


class Admit(enum.StrEnum):
    ISSUED = "issued"
    """Only devices with a live identity (the default with credentials)."""
    ANY = "any"
    """Every device (an open server: nothing is issued)."""


class Admission:
    """The live identities, as the bucket says them now."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        """Device ids admitted now: the registry's hot path looks here (one set lookup)."""
        self.revoked: set[str] = set()
        self.sims: set[str] = set()
        """Live simulator credentials (their ``sim-`` names): ``sim-`` ids are admitted."""

    def __contains__(self, device: object) -> bool:
        """Is ``device`` admitted now (a live identity of its own, or a simulated id while a
        simulator's credential is live)?"""
        if device in self.live:
            return True
        return bool(self.sims) and isinstance(device, str) and is_simulated(device)

    def apply(self, key: str, identity: DeviceIdentity) -> bool:
        """Take one value of the bucket; True when it says the device is revoked."""
        if identity.device_id != key:
            log.warning(
                "security: identity dropped, its device_id is not its key's",
                extra={"key": key, "claimed": identity.device_id},
            )
            return False
        sim = is_simulated(key)
        if identity.live:
            self.live.add(key)
            self.revoked.discard(key)
            if sim:
                self.sims.add(key)
            return False
        self.revoked.add(key)
        self.live.discard(key)
        self.sims.discard(key)
        return True
