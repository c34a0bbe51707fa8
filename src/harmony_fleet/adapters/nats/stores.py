"""Definitions of the fleet's stores that are not typed KV buckets: a KV bucket of raw bytes and
an object store. The fleet's instances are in :mod:`~harmony_fleet.adapters.nats.fleet_kv`
(defined once there), created by :mod:`~harmony_fleet.adapters.nats.provision` only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawBucketDef:
    """A KV bucket whose values are bytes the fleet does not decode itself (TUF metadata,
    verified by python-tuf instead)."""

    name: str
    description: str
    history: int = 1
    max_value_size: int = 1024 * 1024

    def config(self, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name,
            description=self.description,
            history=self.history,
            replicas=replicas,
            storage=StorageType.FILE,
            max_value_size=self.max_value_size,
            direct=True,  # devices read it by direct get only (no consumer)
        )


@dataclass(frozen=True)
class ObjectStoreDef:
    """A NATS object store of the fleet (its stream ``OBJ_<name>`` allows direct gets)."""

    name: str
    description: str

    @property
    def stream(self) -> str:
        return f"OBJ_{self.name}"

    def config(self, replicas: int) -> ObjectStoreConfig:
        return ObjectStoreConfig(
            bucket=self.name,
            description=self.description,
            storage=StorageType.FILE,
            replicas=replicas,
        )
