"""What a writer needs of the operator lease: :class:`Fence` (ADR-023).

:class:`~harmony_fleet.adapters.nats.fleet_kv.FleetKV` takes one and asks it before every write;
the operator's lease keeper (:mod:`harmony_fleet.operator.lease`) is the implementation.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Fence(Protocol):
    """The operator lease as the writers see it (ADR-023; :mod:`harmony_fleet.operator.lease`)."""

    @property
    def epoch(self) -> int:
        """The epoch this process holds the lease with (0 before it first held it)."""
        ...

    def check(self) -> None:
        """Raise :class:`~harmony_fleet.errors.Deposed` unless the lease is surely still ours
        (on this process's own clock)."""
        ...

    async def verify(self) -> None:
        """:meth:`check`, and the lease on the server still at the revision we wrote."""
        ...
