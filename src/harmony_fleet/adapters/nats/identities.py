"""Writing device identities into the ``fleet_identities`` bucket, from the server's store.

``issued.json`` (:class:`~harmony_fleet.adapters.nats.auth.AuthStore`) lives on the server's
machine; the operator may run elsewhere and reads only NATS. So every device credential issued
or revoked is also written into the bucket (:data:`~harmony_fleet.adapters.nats.fleet_kv.
IDENTITIES`): by ``fleet credentials issue/revoke`` when the server is reachable, by
:meth:`~harmony_fleet.adapters.nats.server.EmbeddedNats.issue` while it runs, and at every
server start (:func:`sync_identities`), which catches up whatever was issued or revoked while
the server was down. Only the admin writes the bucket (permissions.py).

:class:`IdentityWriter` keeps one admin connection on a thread of its own, so that issuing
thousands of credentials from synchronous code (tests, benchmarks) costs one KV put each, not a
connection each.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from harmony_fleet.adapters.nats.auth import AuthStore, Issued
from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.contracts import DeviceId, subjects
from harmony_fleet.contracts.identity import DeviceIdentity

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The roles whose credentials are identities the operator admits: a device (its id), a
#: simulator (its ``sim-`` name: the operator then admits ``sim-`` device ids, docs/sim.md).
IDENTITY_ROLES = ("device", "sim")

#: The most keys one identity lists (the newest are kept).
MAX_KEYS = 256


def identity_of(entry: Issued) -> DeviceIdentity:
    """The bucket's value for a device's entry of ``issued.json``."""
    return DeviceIdentity(
        device_id=DeviceId(entry.name),
        users=entry.users[-MAX_KEYS:],
        issued_at=entry.issued_at,
        revoked_at=entry.revoked_at,
    )


async def put_identity(nc: NatsClient | FleetKV, entry: Issued) -> None:
    """Write one device's identity as ``issued.json`` has it now."""
    kv = await (nc if isinstance(nc, FleetKV) else FleetKV(nc)).identities()
    await kv.put(subjects.kv_key(entry.name), identity_of(entry))


async def sync_identities(nc: NatsClient | FleetKV, store: AuthStore) -> int:
    """Make the bucket say what ``issued.json`` says, for every device; return the writes."""
    fleet = nc if isinstance(nc, FleetKV) else FleetKV(nc)
    kv = await fleet.identities()
    written = 0
    for entry in store.issued().values():
        if entry.role not in IDENTITY_ROLES:
            continue
        wanted = identity_of(entry)
        have = await kv.read(subjects.kv_key(entry.name))
        if isinstance(have, Entry) and have.value == wanted:
            continue
        await kv.put(subjects.kv_key(entry.name), wanted)
        written += 1
    if written:
        log.info("device identities written", extra={"count": written})
    return written


async def sync_at(options: NatsOptions, store: AuthStore) -> int:
    """Connect with ``options`` (the admin's), :func:`sync_identities`, disconnect."""
    nc = await connect(options.with_name("fleet-identities"))
    try:
        return await sync_identities(nc, store)
    finally:
        await nc.close()


class IdentityWriter:
    """One admin connection on a thread of its own, for synchronous callers."""

    def __init__(self, options: NatsOptions, *, timeout_s: float = 10.0) -> None:
        self.options = options
        self.timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: NatsClient | None = None
        self._kv: FleetKV | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the writer's thread and wait for its result."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="fleet-identities", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout_s)

    async def _fleet(self) -> FleetKV:
        if self._nc is None or self._nc.is_closed or self._kv is None:
            self._nc = await connect(self.options.with_name("fleet-identities"))
            self._kv = FleetKV(self._nc)
        return self._kv

    async def _put(self, entry: Issued) -> None:
        await put_identity(await self._fleet(), entry)

    async def _sync(self, store: AuthStore) -> int:
        return await sync_identities(await self._fleet(), store)

    def put(self, entry: Issued) -> None:
        """Write one identity (blocks until the server has it)."""
        self.run(self._put(entry))

    async def _put_many(self, entries: list[Issued], batch: int = 256) -> None:
        kv = await (await self._fleet()).identities()  # opened once, not once per put
        for start in range(0, len(entries), batch):
            await asyncio.gather(
                *(
                    kv.put(subjects.kv_key(entry.name), identity_of(entry))
                    for entry in entries[start : start + batch]
                )
            )

    def put_many(self, entries: list[Issued], *, timeout_s: float = 120.0) -> None:
        """Write many identities (puts in concurrent batches on the one connection)."""
        if self._loop is None:
            self.run(asyncio.sleep(0))  # starts the thread
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._put_many(entries), self._loop).result(timeout_s)

    def sync(self, store: AuthStore) -> int:
        """:func:`sync_identities` over this writer's connection."""
        return self.run(self._sync(store))

    async def _close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._nc = self._kv = None

    def close(self) -> None:
        """Close the connection and stop the thread (safe to call twice)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(self.timeout_s)
        except Exception as exc:  # closing is best effort: the server may be gone already
            log.debug("identity writer close", extra={"error": repr(exc)})
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout_s)
        loop.close()
        self._loop = self._thread = None
