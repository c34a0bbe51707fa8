"""The operator process: ingest heartbeats, keep the registry in KV, run the coordinators.

State that must survive a restart lives in NATS KV: on start the operator creates the fleet's
buckets and log stream if they do not exist (with ``--kv-replicas``,
:mod:`~harmony_fleet.adapters.nats.provision`), loads every device record, then subscribes to all
heartbeats. With ``--admit issued`` (the default with credentials) it first reads the identities
bucket and follows it: only devices with a live identity enter the registry, a revoked one
leaves it (:mod:`~harmony_fleet.operator.admission`). KV writes are
coalesced by :class:`~harmony_fleet.operator.registry.Registry` and issued with bounded
concurrency by :meth:`Operator.flush`; a failed write leaves the record dirty for the next pass,
and a write that timed out is simply written again (the value is idempotent).

High availability (ADR-023): several operators may run; each loads the registry and ingests
heartbeats (a warm standby), but only the holder of the operator lease
(:mod:`~harmony_fleet.operator.lease`) writes: the flush loop, the coordinator and the
extensions start once it holds it. Every write is fenced by the lease and carries its epoch; an
operator that loses the lease stops (exit code 75: its supervisor starts it again, a standby).
The lease travels on a NATS connection of its own (``operator-lease``: same credentials and TLS),
opened and closed here, so a flood of heartbeats queued on the main connection cannot delay its
renewals or the fence's reads of its revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from harmony_fleet._tasks import BackgroundTasks, wait_event
from harmony_fleet.adapters.nats.connection import (
    NatsClient,
    NatsOptions,
    Subscription,
    barrier,
    connect_forever,
)
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import TypedKV, Undecodable
from harmony_fleet.adapters.nats.provenance import from_jetstream
from harmony_fleet.adapters.nats.provision import provision
from harmony_fleet.adapters.nats.slow import Drops, pending_limits
from harmony_fleet.contracts import DeviceRecord, subjects
from harmony_fleet.contracts.identity import DeviceIdentity
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.errors import Deposed, FleetError
from harmony_fleet.operator.admission import Admission, Admit
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.lease import LeaseKeeper, default_name
from harmony_fleet.operator.registry import DeviceState, Registry

log = logging.getLogger(__name__)

Extension = Callable[["Operator", NatsClient], Awaitable[None]]

#: The exit code of an operator that lost its lease (EX_TEMPFAIL: start it again).
EXIT_DEPOSED = 75

#: What the heartbeats waiting for the operator's loop may take in memory (``--max-pending-bytes``):
#: sized for the Deployment's 512 MiB limit (docs/operations.md, "Memory under load").
DEFAULT_MAX_PENDING_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    nats: NatsOptions = field(default_factory=NatsOptions)
    presence: PresencePolicy = field(default_factory=PresencePolicy)
    kv_replicas: int = 1
    """Replicas of the buckets and the log stream the operator creates (3 on a 3-node cluster);
    an existing one with fewer is raised, never lowered."""
    flush_interval_s: float = 0.5
    """How often dirty records are written and presence is swept."""
    write_concurrency: int = 128
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES
    """Memory the heartbeats waiting in the client may take, their overhead included; past it
    nats-py drops them (a slow consumer: counted in ``Operator.drops``, never an OOM kill)."""
    admit: Admit | None = None
    """Which devices enter the registry (``--admit``): ``issued`` (a live identity in the
    identities bucket) or ``any``; None: ``issued`` when the operator holds credentials,
    ``any`` when it connects without (an open server issues none)."""
    lease_ttl_s: float = 10.0
    """The operator lease's TTL (ADR-023): a standby takes over within two of them."""
    name: str = ""
    """This operator's name in the lease; empty: host, pid and a random suffix."""

    @property
    def admission(self) -> Admit:
        if self.admit is not None:
            return self.admit
        nats = self.nats
        return Admit.ISSUED if (nats.creds_file or nats.user or nats.token) else Admit.ANY


class Operator:
    def __init__(
        self, config: OperatorConfig, *, extensions: list[Extension] | None = None
    ) -> None:
        self.config = config
        self.admission = Admission() if config.admission is Admit.ISSUED else None
        self.registry = Registry(config.presence, admitted=self.admission)
        self.lease = LeaseKeeper(config.name or default_name(), config.lease_ttl_s)
        self.coordinator = Coordinator(self.registry, fence=self.lease)
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.nc: NatsClient | None = None
        self.lease_nc: NatsClient | None = None
        """The lease's own connection: renewals never wait behind heartbeats."""
        self.devices_kv: TypedKV[DeviceRecord] | None = None
        self.identities_kv: TypedKV[DeviceIdentity] | None = None
        self.writes = 0
        self.write_errors = 0
        self.drops = Drops()
        """Messages nats-py dropped, by subscription (the heartbeats' past their limits)."""
        self.heartbeats: Subscription | None = None
        self.pending_limits = pending_limits(config.max_pending_bytes)
        """The heartbeat subscription's limits, from ``config.max_pending_bytes``."""
        self._extensions = extensions or []
        self._background = BackgroundTasks()

    # -- start ------------------------------------------------------------------------------
    async def open(self) -> NatsClient | None:
        """Connect (retrying forever until ``stop``), open buckets, load the registry."""
        nc = await connect_forever(
            self.config.nats.with_name("operator"), log=log, stop=self.stop, drops=self.drops
        )
        if nc is None:
            return None
        self.nc = nc
        while not self.stop.is_set():
            try:
                await provision(nc, replicas=self.config.kv_replicas)
                self.devices_kv = await FleetKV(nc, fence=self.lease).devices()
                if self.admission is not None:
                    self.identities_kv = await FleetKV(nc).identities()
                    await self._load_identities()
                await self._load()
                break
            except FleetError as exc:
                log.warning("registry not available yet, retrying", extra={"error": str(exc)})
                await wait_event(self.stop, 1.0)
        # The one plain subscription, and the one a fleet can flood: bounded (KV watches are
        # JetStream deliveries, held back by the server's flow control).
        limits = self.pending_limits
        self.heartbeats = await nc.subscribe(
            subjects.ALL_HEARTBEATS,
            cb=self._on_heartbeat,
            pending_msgs_limit=limits.msgs,
            pending_bytes_limit=limits.bytes,
        )
        await barrier(nc)  # the server knows our subscription before we say we are ready
        return nc

    async def _load(self) -> None:
        assert self.devices_kv is not None
        now = time.time()
        loaded = bad = 0
        for item in await self.devices_kv.snapshot():
            if isinstance(item, Undecodable):
                bad += 1
                log.warning(
                    "registry record skipped", extra={"key": item.key, "field": item.error.field}
                )
                continue
            if not self.registry.admits(item.key):
                if self._identities_in_use():  # revoked (or never issued) while we were away
                    await self._forget(item.key)
                continue
            self.registry.load(item.value, now=now)
            loaded += 1
        log.info("registry loaded", extra={"devices": loaded, "skipped": bad})

    async def _load_identities(self) -> None:
        assert self.identities_kv is not None and self.admission is not None
        for item in await self.identities_kv.snapshot():
            if not isinstance(item, Undecodable):
                self.admission.apply(item.key, item.value)
        log.info(
            "identities loaded",
            extra={"live": len(self.admission.live), "revoked": len(self.admission.revoked)},
        )
        if not self._identities_in_use():
            log.warning(
                "no device identities: every device is refused until credentials are issued "
                "(`fleet credentials issue --device ID`); a NATS not set up by `fleet server` "
                "issues none: run the operator with --admit any there. Registry records are "
                "kept, not deleted, while no identity exists"
            )

    def _identities_in_use(self) -> bool:
        """True once any device identity exists: only then are records of devices without a
        live one deleted (a NATS never set up by `fleet server` must not lose its registry)."""
        return self.admission is not None and bool(self.admission.live or self.admission.revoked)

    async def _follow_identities(self) -> None:
        """Admit devices as they are issued credentials; take revoked ones out."""
        assert self.identities_kv is not None and self.admission is not None
        async for entry in self.identities_kv.values():
            if self.admission.apply(entry.key, entry.value) and entry.key in self.registry.devices:
                await self._forget(entry.key)

    async def _forget(self, device: str) -> None:
        """Take a device without a live identity out of the registry and its record out of KV."""
        assert self.devices_kv is not None
        self.registry.forget(device)
        try:
            await self.devices_kv.delete(device)
        except FleetError as exc:
            log.warning("record of a revoked device not deleted", extra={"error": str(exc)})
            return
        log.warning("device revoked: out of the registry", extra={"device_id": device})

    async def _on_heartbeat(self, msg: Any) -> None:
        # Two attribute reads on the hot path: an agent's heartbeat has neither headers nor a
        # reply; stored data that JetStream delivered to a heartbeat subject has one of them.
        if msg.headers or msg.reply:
            self.registry.rejected += 1
            kind = "redelivered" if from_jetstream(msg.reply, msg.headers) else "not_plain"
            self.registry.security_event(kind, msg.subject, time.time(), "heartbeat")
            return
        self.registry.ingest(msg.subject, msg.data, time.time())

    # -- writes -----------------------------------------------------------------------------
    async def _write(self, state: DeviceState, sem: asyncio.Semaphore, now: float) -> None:
        assert self.devices_kv is not None
        async with sem:
            # Claim the write before awaiting it, so the next flush pass does not issue it twice.
            state.dirty = False
            previous, state.last_written = state.last_written, now
            record = msgspec.structs.replace(state.record(now), lease_epoch=self.lease.epoch)
            try:
                await self.devices_kv.put(state.device_id, record)
            except FleetError as exc:
                state.dirty = True  # OutcomeUnknown included: the value is idempotent
                state.last_written = previous
                self.write_errors += 1
                log.debug(
                    "registry write failed", extra={"device_id": state.device_id, "error": str(exc)}
                )
                return
            self.writes += 1
            if state.device_id not in self.registry.devices:  # revoked while it was written
                with contextlib.suppress(FleetError):
                    await self.devices_kv.delete(state.device_id)

    async def flush(self, now: float | None = None) -> int:
        """Sweep presence and write every record that is due; return how many were due."""
        if self.devices_kv is None:
            return 0
        now = time.time() if now is None else now
        for device in self.registry.sweep(now):
            log.info("device offline", extra={"device_id": device})
        due = list(self.registry.due(now))
        if due:
            try:
                await self.lease.verify()
            except Deposed:
                return 0
            except FleetError as exc:  # lease not readable now: the records wait for the next pass
                log.warning("registry flush deferred: %s", exc)
                return 0
            sem = asyncio.Semaphore(self.config.write_concurrency)
            await asyncio.gather(*(self._write(s, sem, now) for s in due))
        return len(due)

    async def _flush_loop(self) -> None:
        while not self.stop.is_set():
            try:
                await self.flush()
            except Exception:
                log.exception("registry flush failed")
            await wait_event(self.stop, self.config.flush_interval_s)

    # -- lifecycle --------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        return self._background.spawn(coro, name)

    async def run(self) -> int:
        log.info(
            "operator starting",
            extra={
                "servers": list(self.config.nats.servers),
                "admit": self.config.admission.value,
            },
        )
        nc = await self.open()
        if nc is not None:
            if self.identities_kv is not None:
                self.spawn(self._follow_identities(), "identities")
            lease_nc = await self._open_lease()
            if lease_nc is None or not await self.lease.acquire(self.stop):
                return await self.close()
            self.spawn(self.lease.hold(self.stop), "lease")
            self.spawn(self._step_down(), "lease-lost")
            self.spawn(self._flush_loop(), "registry-flush")
            self.spawn(self.coordinator.run(nc), "coordinator")
            for extension in self._extensions:
                self.spawn(extension(self, nc), getattr(extension, "__name__", "extension"))
            self.ready.set()
            log.info(
                "operator ready",
                extra={"devices": len(self.registry.devices), "epoch": self.lease.epoch},
            )
            await self.stop.wait()
        code = await self.close()
        return EXIT_DEPOSED if self.lease.lost.is_set() else code

    async def _open_lease(self) -> NatsClient | None:
        """The lease's connection (ADR-023): the main one carries every heartbeat, and
        nats-server queues up to ``max_pending`` per connection ahead of a renewal."""
        self.lease_nc = await connect_forever(
            self.config.nats.with_name("operator-lease"), log=log, stop=self.stop
        )
        if self.lease_nc is None:
            return None
        while not self.stop.is_set():
            try:
                await self.lease.open(self.lease_nc)
                return self.lease_nc
            except FleetError as exc:
                log.warning("operator lease not available yet", extra={"error": str(exc)})
                await wait_event(self.stop, 1.0)
        return None

    async def _step_down(self) -> None:
        await self.lease.lost.wait()
        self.stop.set()

    async def close(self) -> int:
        await self._background.cancel_all()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.flush()
        with contextlib.suppress(Exception):
            await self.lease.release()
        for nc in (self.lease_nc, self.nc):
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        log.info(
            "operator stopped",
            extra={
                "ingested": self.registry.ingested,
                "rejected": self.registry.rejected,
                "security_events": dict(self.registry.security.counts),
                "dropped": dict(self.drops.counts),
                "writes": self.writes,
            },
        )
        return 0
