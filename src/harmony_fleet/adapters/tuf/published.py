"""The published repository: metadata in the ``fleet_tuf`` KV bucket, artifacts in the
``fleet_artifacts`` object store (both made by provisioning; docs/releases.md).

The release manager's folder and the operator's timer both change the published repository, so
every change starts from what is published (:func:`load_published`, :func:`adopt_newer`): a
snapshot or timestamp the operator re-signed is never overwritten by an older local one, which
every client would refuse as a rollback.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from tuf.api.metadata import Metadata

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.adapters.nats.fleet_kv import ARTIFACTS, TUF_METADATA
from harmony_fleet.adapters.nats.kv import missing_bucket
from harmony_fleet.adapters.tuf.keys import KeyRing
from harmony_fleet.adapters.tuf.repository import Repository
from harmony_fleet.adapters.tuf.store import MemoryStore, MetadataStore, publish_order
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


async def _bucket(nc: NatsClient) -> KeyValue:
    try:
        return await nc.jetstream().key_value(TUF_METADATA.name)
    except nats.js.errors.BucketNotFoundError:
        raise missing_bucket(TUF_METADATA.name) from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"open bucket {TUF_METADATA.name}") from exc


async def _store(nc: NatsClient) -> ObjectStore:
    try:
        return await nc.jetstream().object_store(ARTIFACTS.name)
    except nats.js.errors.BucketNotFoundError:
        raise missing_bucket(ARTIFACTS.name) from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"open object store {ARTIFACTS.name}") from exc


async def _get(kv: KeyValue, name: str) -> bytes | None:
    try:
        entry = await kv.get(name)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        return None
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"read {TUF_METADATA.name}/{name}") from exc
    return bytes(entry.value or b"")


def _version(data: bytes | None) -> int:
    if data is None:
        return 0
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except Exception as exc:  # python-tuf raises several types for a bad file
        raise ConfigError(f"unreadable TUF metadata: {exc}") from exc
    return int(md.signed.version)


def _pointers(store: MetadataStore) -> list[str]:
    """The snapshot and targets file names the store's timestamp leads to."""
    timestamp = store.get("timestamp.json")
    if timestamp is None:
        return []
    ts: Metadata[Any] = Metadata.from_bytes(timestamp)
    snapshot_name = f"{ts.signed.snapshot_meta.version}.snapshot.json"
    snapshot = store.get(snapshot_name)
    if snapshot is None:
        return [snapshot_name]
    sn: Metadata[Any] = Metadata.from_bytes(snapshot)
    return [snapshot_name, f"{sn.signed.meta['targets.json'].version}.targets.json"]


async def load_published(nc: NatsClient) -> MemoryStore:
    """Every root, the timestamp and the snapshot and targets it leads to, as published."""
    kv = await _bucket(nc)
    files: dict[str, bytes] = {}
    version = 1
    while (data := await _get(kv, f"{version}.root.json")) is not None:
        files[f"{version}.root.json"] = data
        version += 1
    store = MemoryStore()
    store.files = files  # filled below; not "written"
    timestamp = await _get(kv, "timestamp.json")
    if timestamp is not None:
        files["timestamp.json"] = timestamp
        for _ in range(2):
            for name in _pointers(store):
                if name not in files and (data := await _get(kv, name)) is not None:
                    files[name] = data
    return store


def adopt_newer(local: MetadataStore, published: MemoryStore) -> list[str]:
    """Copy into ``local`` what is published and newer than it (roots it lacks, a timestamp of
    a higher version with what it leads to); return the names copied."""
    copied: list[str] = []
    for name, body in sorted(published.files.items()):
        if name.endswith(".root.json") and local.get(name) is None:
            local.put(name, body)
            copied.append(name)
    theirs = published.get("timestamp.json")
    if _version(theirs) > _version(local.get("timestamp.json")):
        for name in _pointers(published):
            data = published.get(name)
            if data is not None and local.get(name) != data:
                local.put(name, data)
                copied.append(name)
        assert theirs is not None
        local.put("timestamp.json", theirs)
        copied.append("timestamp.json")
    if copied:
        log.info("newer published metadata adopted", extra={"files": copied})
    return copied


def current_names(store: MetadataStore) -> list[str]:
    """What clients need from ``store``: every root, timestamp, and what it leads to."""
    names: list[str] = []
    version = 1
    while store.get(f"{version}.root.json") is not None:
        names.append(f"{version}.root.json")
        version += 1
    return publish_order([*names, *_pointers(store), "timestamp.json"])


async def push_metadata(nc: NatsClient, store: MetadataStore, names: list[str]) -> list[str]:
    """Write ``names`` from ``store`` to the bucket (roots first, timestamp last), skipping
    those already there byte for byte; return the names written."""
    kv = await _bucket(nc)
    written: list[str] = []
    for name in publish_order(names):
        data = store.get(name)
        if data is None or await _get(kv, name) == data:
            continue
        try:
            await kv.put(name, data)
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"write {TUF_METADATA.name}/{name}", write=True) from exc
        written.append(name)
    if written:
        log.info("metadata published", extra={"files": written})
    return written


class _Counting(io.RawIOBase):
    """A file reader that reports how many bytes were read so far."""

    def __init__(self, f: io.BufferedReader, progress: Progress) -> None:
        self._f = f
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        if n:
            self._progress(n)
        return n


async def put_artifact(
    nc: NatsClient, source: Path, name: str, *, progress: Progress | None = None
) -> bool:
    """Upload ``source`` as object ``name``; False when an object of that name (a SHA-256
    prefixed name: the same bytes) is already there."""
    store = await _store(nc)
    size = os.path.getsize(source)  # noqa: ASYNC240 (one stat)
    try:
        info = await store.get_info(name)
    except nats.js.errors.ObjectNotFoundError:
        info = None
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"look up artifact {name}") from exc
    if info is not None and not info.deleted and info.size == size:
        return False
    try:
        with open(source, "rb") as f:  # noqa: ASYNC230 (read by the store in a thread)
            reader = _Counting(f, progress or (lambda _n: None))
            await store.put(name, io.BufferedReader(reader))
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"upload artifact {name}", write=True) from exc
    log.info("artifact uploaded", extra={"object": name, "bytes": size})
    return True


async def refresh_published(nc: NatsClient, keys: KeyRing, *, force: bool = False) -> list[str]:
    """Re-sign what is due of the published repository with ``keys`` (the online keys) and
    publish it; return the roles re-signed. What the operator's timer and ``fleet release
    refresh --keys online.keys.json`` do: no local folder, the bucket is the repository."""
    published = Repository(await load_published(nc), keys)
    done = published.refresh(force=force)
    await push_metadata(nc, published.store, published.store.written)
    return done


async def is_published(nc: NatsClient) -> bool:
    """Whether a repository was ever published (the bucket holds a timestamp)."""
    return await _get(await _bucket(nc), "timestamp.json") is not None
