"""Device identities: which device ids were issued credentials, and whether they still hold.

KV bucket ``fleet_identities``, key = device id, written only where credentials are issued and
revoked (``fleet credentials issue/revoke`` and the server bootstrap, which copies the server's
``issued.json`` in at every start); read by the operator, which admits a device's heartbeats and
status only while its identity is live (docs/security.md). Devices cannot read or write it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from harmony_fleet.contracts._codec import Codec
from harmony_fleet.contracts.ids import DeviceIdField, NonNegFloat

IDENTITY_SCHEMA_VERSION = 1

#: KV bucket of the identities (the older buckets are spelled in :mod:`.subjects`).
BUCKET_IDENTITIES = "fleet_identities"

#: A NATS user's public nkey (``U`` and 55 base32 characters).
UserKey = Annotated[str, msgspec.Meta(pattern=r"^U[A-Z2-7]{55}$")]


class DeviceIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """One device id credentials were issued to."""

    v: int = IDENTITY_SCHEMA_VERSION
    device_id: DeviceIdField
    users: Annotated[list[UserKey], msgspec.Meta(max_length=256)] = []
    """The public keys of its credentials (every key issued since it was last revoked)."""
    issued_at: NonNegFloat
    revoked_at: NonNegFloat | None = None
    """When set, every key above is revoked: the device is no longer part of the fleet."""

    @property
    def live(self) -> bool:
        return self.revoked_at is None


DEVICE_IDENTITY = Codec(DeviceIdentity)
