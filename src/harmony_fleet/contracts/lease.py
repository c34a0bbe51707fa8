"""The operator's lease: which ``fleet operator`` process is the active one (ADR-023).

KV bucket ``fleet_lease``, key ``operator``, written only by operators (and the admin), with
compare-and-set on the key's revision: the holder renews it, a standby takes it over once its
revision has not changed for ``ttl_s`` on the standby's own clock, with ``epoch`` one higher.
Every write the active operator makes carries its epoch (``lease_epoch`` in registry records,
markers and ``upgrade_stop``); ``renewed_at`` is the holder's wall clock, shown, never compared.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from harmony_fleet.contracts._codec import Codec
from harmony_fleet.contracts.ids import NonNegFloat

LEASE_SCHEMA_VERSION = 1

BUCKET_LEASE = "fleet_lease"
#: The one key of the bucket: the active operator's lease.
LEASE_KEY = "operator"

HolderName = Annotated[str, msgspec.Meta(max_length=128)]


class OperatorLease(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds the operator lease, since which takeover, for how long without renewal."""

    v: int = LEASE_SCHEMA_VERSION
    holder: HolderName
    """The holding process's name (``fleet operator --name``); empty: released on shutdown,
    free to take at once."""
    epoch: Annotated[int, msgspec.Meta(ge=1)]
    """One more at every change of holder: the fencing token."""
    ttl_s: Annotated[float, msgspec.Meta(gt=0, le=3600)]
    renewed_at: NonNegFloat = 0.0

    @property
    def released(self) -> bool:
        return self.holder == ""


OPERATOR_LEASE = Codec(OperatorLease)
