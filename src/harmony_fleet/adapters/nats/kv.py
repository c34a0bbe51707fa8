"""Typed JetStream KV: values are contract structs, errors are ours.

What the facts measured on this machine mean for callers (see docs/nats.md):

* A ``put`` made while the server is away can raise a timeout **and still be applied** after
  reconnect. We raise :class:`~harmony_fleet.errors.OutcomeUnknown`: re-read before deciding.
* Compare-and-set (:meth:`TypedKV.update` with ``last=``, :meth:`TypedKV.create`) raises
  :class:`~harmony_fleet.errors.Conflict` when another writer won.
* A value that no longer decodes (a bug, an old schema, a hostile writer) is reported as
  :class:`~harmony_fleet.errors.InvalidMessage`; :meth:`TypedKV.get` never returns garbage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from harmony_fleet.contracts import Codec, encode
from harmony_fleet.contracts._codec import MAX_MESSAGE_BYTES
from harmony_fleet.errors import (
    Conflict,
    InvalidMessage,
    NotFound,
    OutcomeUnknown,
    Timeout,
    Unavailable,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A decoded value with the revision to use for compare-and-set."""

    key: str
    value: T
    revision: int


def _wrap(exc: BaseException, what: str, *, write: bool) -> Exception:
    if isinstance(exc, (nats.errors.TimeoutError, asyncio.TimeoutError, TimeoutError)):
        if write:
            return OutcomeUnknown(f"{what}: timed out; the write may still be applied")
        return Timeout(f"{what}: timed out")
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        return Conflict(f"{what}: another writer changed the key first")
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return Unavailable(f"{what}: JetStream unavailable")
    if isinstance(exc, (nats.errors.ConnectionClosedError, nats.errors.NoServersError)):
        return Unavailable(f"{what}: not connected to NATS")
    if isinstance(exc, nats.errors.Error):
        return Unavailable(f"{what}: {type(exc).__name__}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


async def open_bucket(
    js: JetStreamContext,
    name: str,
    *,
    history: int = 5,
    replicas: int = 1,
    create: bool = True,
) -> KeyValue:
    """Open a KV bucket, creating it when ``create`` (idempotent; replicas for a cluster)."""
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError as exc:
        if not create:
            raise NotFound(f"KV bucket {name} does not exist yet") from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise _wrap(exc, f"open bucket {name}", write=False) from exc
    try:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=name,
                history=history,
                replicas=replicas,
                storage=StorageType.FILE,
                max_value_size=MAX_MESSAGE_BYTES,
            )
        )
    except (nats.errors.Error, TimeoutError) as exc:
        raise _wrap(exc, f"create bucket {name}", write=True) from exc


class TypedKV(Generic[T]):
    """One bucket whose values all decode with one :class:`Codec`."""

    def __init__(self, kv: KeyValue, codec: Codec[T], *, name: str) -> None:
        self.kv = kv
        self.codec = codec
        self.name = name

    async def get(self, key: str) -> Entry[T] | None:
        """The current value, or None when the key is absent or deleted."""
        try:
            entry = await self.kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"get {self.name}/{key}", write=False) from exc
        if entry.value is None:
            return None
        value = self.codec.decode(entry.value)
        return Entry(key, value, int(entry.revision or 0))

    async def put(self, key: str, value: T) -> int:
        """Unconditional write; returns the new revision."""
        try:
            return int(await self.kv.put(key, encode(value)))
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"put {self.name}/{key}", write=True) from exc

    async def create(self, key: str, value: T) -> int:
        """Write only if the key does not exist; :class:`Conflict` otherwise."""
        try:
            return int(await self.kv.create(key, encode(value)))
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"create {self.name}/{key}", write=True) from exc

    async def update(self, key: str, value: T, *, last: int) -> int:
        """Write only if the key is still at revision ``last``; :class:`Conflict` otherwise."""
        try:
            return int(await self.kv.update(key, encode(value), last=last))
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"update {self.name}/{key}", write=True) from exc

    async def delete(self, key: str) -> None:
        try:
            await self.kv.delete(key)
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"delete {self.name}/{key}", write=True) from exc

    async def keys(self) -> list[str]:
        try:
            return list(await self.kv.keys())
        except nats.js.errors.NoKeysError:
            return []
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"list {self.name}", write=False) from exc

    async def items(self) -> AsyncIterator[Entry[T] | InvalidMessage]:
        """Every current value; a value that fails to decode is yielded as its error."""
        for key in await self.keys():
            try:
                entry = await self.get(key)
            except InvalidMessage as exc:
                yield exc
                continue
            if entry is not None:
                yield entry

    async def watch(self, key: str = ">", **kwargs: Any) -> Any:
        """A nats-py watcher (replays current values, then ``None``, then live updates)."""
        try:
            if key == ">":
                return await self.kv.watchall(**kwargs)
            return await self.kv.watch(key, **kwargs)
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"watch {self.name}/{key}", write=False) from exc

    async def snapshot(self, *, timeout_s: float = 30.0) -> list[Entry[T] | InvalidMessage]:
        """Every current value in one pass (an ordered consumer, much faster than get per key).

        A value that fails to decode is returned as its :class:`InvalidMessage`, so one bad
        record cannot stop an operator from loading the rest.
        """
        out: list[Entry[T] | InvalidMessage] = []
        try:
            watcher = await self.kv.watchall(ignore_deletes=True)
        except (nats.errors.Error, TimeoutError) as exc:
            raise _wrap(exc, f"snapshot {self.name}", write=False) from exc
        try:
            async with asyncio.timeout(timeout_s):
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.value is None or entry.operation is not None:
                        continue
                    try:
                        value = self.codec.decode(entry.value)
                    except InvalidMessage as exc:
                        out.append(exc)
                        continue
                    out.append(Entry(entry.key, value, int(entry.revision or 0)))
        except TimeoutError as exc:
            raise Timeout(f"snapshot {self.name}: timed out after {timeout_s} s") from exc
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return out
