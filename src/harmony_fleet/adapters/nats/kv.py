"""Typed JetStream KV: values are contract structs, errors are ours.

What the facts measured on this machine mean for callers (docs/nats.md describes the layer):

* A ``put`` made while the server is away can raise a timeout **and still be applied** after
  reconnect. We raise :class:`~harmony_fleet.errors.OutcomeUnknown`: re-read before deciding.
* Compare-and-set (:meth:`TypedKV.update` with ``last=``, :meth:`TypedKV.create`) raises
  :class:`~harmony_fleet.errors.Conflict` when another writer won.
* A value that no longer decodes (a bug, an old schema, a hostile writer) is reported as
  :class:`~harmony_fleet.errors.InvalidMessage`; :meth:`TypedKV.get` never returns garbage.
  :meth:`TypedKV.read` returns it as an :class:`Undecodable` with its revision, so a writer can
  still replace it with compare-and-set.

This module only *opens* buckets: which buckets exist, with what limits, is
:mod:`~harmony_fleet.adapters.nats.fleet_kv`; creating them is
:mod:`~harmony_fleet.adapters.nats.provision` (the operator and the server bootstrap only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.connection import on_reconnected
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.contracts import Codec, encode
from harmony_fleet.errors import InvalidMessage, NotFound, Timeout

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a broken watch waits before it watches again.
REWATCH_S = 1.0

#: How often :meth:`TypedKV.follow` looks whether the connection was re-established (a local
#: counter: no traffic) when its connection does not tell (one not made by ``connect``), and
#: how soon it reads its key again after a failed read.
FOLLOW_RECONNECT_CHECK_S = 5.0

#: How often :meth:`TypedKV.follow` reads its key even when nothing woke it (a safety net).
FOLLOW_POLL_S = 60.0

#: When a write woke :meth:`TypedKV.follow` but its read found no new revision, it reads again
#: after these pauses: the server hands a publish to subscribers of the subject and to the
#: stream's ingest independently, so a direct get made at once can still answer the old value.
FOLLOW_REREAD_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A decoded value with the revision to use for compare-and-set."""

    key: str
    value: T
    revision: int


@dataclass(frozen=True)
class Undecodable:
    """A stored value that fails strict decoding, with the revision to replace it at."""

    bucket: str
    key: str
    revision: int
    error: InvalidMessage

    def __str__(self) -> str:
        return (
            f"undecodable value in {self.bucket}/{self.key} (revision {self.revision}): "
            f"{self.error.field}: {self.error.reason}"
        )


def missing_bucket(name: str) -> NotFound:
    """The error for a bucket nobody created yet: says who creates it."""
    return NotFound(
        f"KV bucket {name} does not exist: start the operator (`fleet operator`) or "
        "`fleet server`, which create the fleet's buckets"
    )


async def open_bucket(js: JetStreamContext, name: str) -> KeyValue:
    """Open an existing KV bucket; :class:`NotFound` naming it when nobody created it yet.

    Opening never creates and never reconfigures, so it can never downgrade the replicas the
    operator chose.
    """
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError as exc:
        raise missing_bucket(name) from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"open bucket {name}") from exc


class TypedKV(Generic[T]):
    """One bucket whose values all decode with one :class:`Codec`."""

    def __init__(
        self,
        kv: KeyValue,
        codec: Codec[T],
        *,
        name: str,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.kv = kv
        self.codec = codec
        self.name = name
        self.before_write = before_write
        """Called before every write and delete; raising refuses it (the operator's fence,
        ADR-023)."""

    def _decode(self, key: str, data: bytes, revision: int) -> Entry[T] | Undecodable:
        try:
            return Entry(key, self.codec.decode(data), revision)
        except InvalidMessage as exc:
            return Undecodable(self.name, key, revision, exc)

    async def read(self, key: str) -> Entry[T] | Undecodable | None:
        """The current value, an :class:`Undecodable` one, or None (absent or deleted)."""
        try:
            entry = await self.kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"get {self.name}/{key}") from exc
        if entry.value is None:
            return None
        return self._decode(key, entry.value, int(entry.revision or 0))

    async def read_after_wake(
        self, key: str, known: int | None, *, pauses: tuple[float, ...] = FOLLOW_REREAD_S
    ) -> Entry[T] | Undecodable | None:
        """Read ``key`` because a write crossed its subject: while the answer is still revision
        ``known`` (or nothing), read again after each of ``pauses`` (the stream may not have
        stored the write the subject carried yet). The last answer, new or not."""
        found = await self.read(key)
        for pause in pauses:
            if found is not None and found.revision != known:
                break
            await asyncio.sleep(pause)  # a retry's pace, not a wait for a condition
            found = await self.read(key)
        return found

    async def get(self, key: str) -> Entry[T] | None:
        """The current value, or None; :class:`InvalidMessage` if it does not decode."""
        found = await self.read(key)
        if isinstance(found, Undecodable):
            raise found.error
        return found

    async def put(self, key: str, value: T) -> int:
        """Unconditional write; returns the new revision."""
        return await self._write("put", key, value)

    async def create(self, key: str, value: T) -> int:
        """Write only if the key does not exist; :class:`Conflict` otherwise."""
        return await self._write("create", key, value)

    async def update(self, key: str, value: T, *, last: int) -> int:
        """Write only if the key is still at revision ``last``; :class:`Conflict` otherwise."""
        return await self._write("update", key, value, last=last)

    async def _write(self, op: str, key: str, value: T, *, last: int | None = None) -> int:
        if self.before_write is not None:
            self.before_write()
        data = encode(value)
        try:
            if op == "create":
                return int(await self.kv.create(key, data))
            if op == "update":
                return int(await self.kv.update(key, data, last=last))
            return int(await self.kv.put(key, data))
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"{op} {self.name}/{key}", write=True) from exc

    async def delete(self, key: str) -> None:
        if self.before_write is not None:
            self.before_write()
        try:
            await self.kv.delete(key)
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"delete {self.name}/{key}", write=True) from exc

    async def keys(self) -> list[str]:
        try:
            return list(await self.kv.keys())
        except nats.js.errors.NoKeysError:
            return []
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"list {self.name}") from exc

    async def items(self) -> AsyncIterator[Entry[T] | Undecodable]:
        """Every current value; a value that fails to decode is yielded as it is."""
        for key in await self.keys():
            found = await self.read(key)
            if found is not None:
                yield found

    async def _watcher(self, key: str) -> Any:
        try:
            if key == ">":
                return await self.kv.watchall()
            return await self.kv.watch(key)
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"watch {self.name}/{key}") from exc

    async def values(self, key: str = ">") -> AsyncIterator[Entry[T]]:
        """Every value of ``key`` (``>``: of every key), decoded: first the current ones, then
        each change, for ever.

        Deletes are skipped; a value that fails to decode is logged and skipped (the next good
        one follows); a broken watch (server restart, lost connection) is watched again after
        :data:`REWATCH_S`, which replays the current values: consumers must be idempotent.
        """
        while True:
            watcher: Any = None
            try:
                watcher = await self._watcher(key)
                async for raw in watcher:
                    if raw is None or raw.value is None or raw.operation is not None:
                        continue
                    found = self._decode(raw.key, raw.value, int(raw.revision or 0))
                    if isinstance(found, Undecodable):
                        log.warning(
                            "undecodable KV value skipped",
                            extra={
                                "bucket": self.name,
                                "key": raw.key,
                                "field": found.error.field,
                                "reason": found.error.reason,
                            },
                        )
                        continue
                    yield found
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("KV watch restarting", extra={"bucket": self.name, "error": repr(exc)})
                await asyncio.sleep(REWATCH_S)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()

    async def follow(
        self, nc: Any, key: str, *, poll_s: float = FOLLOW_POLL_S
    ) -> AsyncIterator[Entry[T]]:
        """Every new value of the one key ``key``, with no consumer: what a device may do.

        Reads the key by a direct get at once, whenever a write crosses the key's subject (a
        plain subscription to ``$KV.<bucket>.<key>``), as soon as the connection is
        re-established (a write made while it was down: :func:`~.connection.on_reconnected`;
        a connection that does not tell is looked at every ``FOLLOW_RECONNECT_CHECK_S``), within
        ``FOLLOW_RECONNECT_CHECK_S`` of a failed read, and every ``poll_s``. An idle device's
        follow costs no traffic and no wake-up between them: it is part of every agent's idle
        CPU. A wake whose read finds no new revision (the stream has not stored the write yet)
        is followed by reads after each pause of ``FOLLOW_REREAD_S``, until one finds it.
        Yields a value when its revision is new; deletes and undecodable values are skipped
        (logged). Creating a consumer would need a permission that cannot be scoped to one
        device (docs/security.md).
        """
        woken = asyncio.Event()

        async def wake(_msg: Any) -> None:
            woken.set()

        def reconnects() -> int:
            return int(nc.stats["reconnects"])

        stop_listening = on_reconnected(nc, woken.set)
        check_s = FOLLOW_RECONNECT_CHECK_S if stop_listening is None else poll_s
        sub = await nc.subscribe(f"$KV.{self.name}.{key}", cb=wake)
        last: int | None = None
        was_woken = False
        rereads = 0  # reads made since a wake without finding a new revision
        loop = asyncio.get_running_loop()
        try:
            while True:
                woken.clear()
                seen = reconnects()
                read_by = loop.time() + poll_s
                fresh = False
                try:
                    found = await self.read(key)
                except Exception as exc:
                    log.warning("KV read failed", extra={"bucket": self.name, "error": repr(exc)})
                    found = None
                    read_by = loop.time() + min(poll_s, FOLLOW_RECONNECT_CHECK_S)
                if isinstance(found, Undecodable):
                    fresh = found.revision != last
                    log.warning("undecodable KV value skipped", extra={"detail": str(found)})
                elif found is not None and found.revision != last:
                    fresh = True
                    last = found.revision
                    yield found
                if was_woken and not fresh and rereads < len(FOLLOW_REREAD_S):
                    read_by = min(read_by, loop.time() + FOLLOW_REREAD_S[rereads])
                    rereads += 1
                else:
                    was_woken, rereads = False, 0
                while not woken.is_set() and reconnects() == seen and loop.time() < read_by:
                    wait = min(check_s, read_by - loop.time())
                    await wait_event(woken, max(0.0, wait))
                if woken.is_set():  # a write crossed the key's subject: expect a new revision
                    was_woken, rereads = True, 0
        finally:
            if stop_listening is not None:
                stop_listening()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def snapshot(self, *, timeout_s: float = 30.0) -> list[Entry[T] | Undecodable]:
        """Every current value in one pass (an ordered consumer, much faster than get per key).

        A value that fails to decode is returned as an :class:`Undecodable`, so one bad record
        cannot stop an operator from loading the rest.
        """
        out: list[Entry[T] | Undecodable] = []
        try:
            watcher = await self.kv.watchall(ignore_deletes=True)
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"snapshot {self.name}") from exc
        try:
            async with asyncio.timeout(timeout_s):
                async for entry in watcher:
                    if entry is None:
                        break
                    if entry.value is None or entry.operation is not None:
                        continue
                    out.append(self._decode(entry.key, entry.value, int(entry.revision or 0)))
        except TimeoutError as exc:
            raise Timeout(f"snapshot {self.name}: timed out after {timeout_s} s") from exc
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return out
