"""Definitions of the fleet's stores that are not typed KV buckets: a KV bucket of raw bytes and
an object store. The fleet's instances are in :mod:`~harmony_fleet.adapters.nats.fleet_kv`
(defined once there), created by :mod:`~harmony_fleet.adapters.nats.provision` only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType

log = logging.getLogger(__name__)


def kv_config(
    name: str, description: str, history: int, max_value_size: int, replicas: int
) -> KeyValueConfig:
    """The configuration of every KV bucket of the fleet: file storage, and ``allow_direct``
    (any replica answers a get, and devices read by direct get since they may not create
    consumers)."""
    return KeyValueConfig(
        bucket=name,
        description=description,
        history=history,
        replicas=replicas,
        storage=StorageType.FILE,
        max_value_size=max_value_size,
        direct=True,
    )


@dataclass(frozen=True)
class RawBucketDef:
    """A KV bucket whose values are bytes the fleet does not decode itself (TUF metadata,
    verified by python-tuf instead)."""

    name: str
    description: str
    history: int = 1
    max_value_size: int = 1024 * 1024

    def config(self, replicas: int) -> KeyValueConfig:
        # devices read it by direct get only (no consumer)
        return kv_config(self.name, self.description, self.history, self.max_value_size, replicas)


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
