"""The fleet's KV buckets and log stream, each defined once, and the domain operations on them.

Every bucket of the fleet is a :class:`BucketDef` here (name, codec, history, value limit; the
replicas come from the deployment) and the log stream is :class:`LogStreamLimits`. Who does
what with them:

* **Creating** them is :mod:`~harmony_fleet.adapters.nats.provision`, called by the operator at
  start and by the server bootstrap (``fleet server``, :class:`~.server.EmbeddedNats`), with the
  deployment's replica count (``fleet operator --kv-replicas``). Nothing else creates a bucket,
  so no client can create one with the wrong replicas; an import-linter contract keeps the
  provisioning module out of the agent and the CLI.
* **Opening** them is :class:`FleetKV`: open without creating (a missing bucket is a
  :class:`~harmony_fleet.errors.NotFound` that names it and says to start the operator or
  ``fleet server``), never reconfiguring, so never downgrading replicas.
* **Fencing** (ADR-023): ``FleetKV(nc, fence=lease)`` asks the :class:`~.fence.Fence` before
  every write (a deposed operator's raises :class:`~harmony_fleet.errors.Deposed`), and
  :func:`write_marker` stamps the lease epoch on the marker.
* **Writing a marker** is :func:`write_marker`, the one function that does, with
  compare-and-set: ``fleet upgrade``, ``fleet rollback``, the operator's Kubernetes mode and the
  local fleet all call it. A marker that no longer decodes is replaced (compare-and-set on its
  revision), never left to wedge the device.
* **Reading what the fleet knows about a device** (:func:`read_device`), planning a rollback
  from it (:func:`plan_rollback`), and following an upgrade to its end (:func:`follow`); the
  pure decisions are :mod:`harmony_fleet.core.upgrade.requests`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import msgspec
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    StorageType,
    StreamConfig,
    SubjectTransform,
)

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fence import Fence
from harmony_fleet.adapters.nats.kv import Entry, TypedKV, Undecodable, open_bucket
from harmony_fleet.adapters.nats.stores import ObjectStoreDef, RawBucketDef, kv_config
from harmony_fleet.contracts import (
    DEVICE_PROGRESS,
    DEVICE_RECORD,
    MAX_MESSAGE_BYTES,
    ROLLOUT,
    ROLLOUT_STATUS,
    UPGRADE_MARKER,
    UPGRADE_STATUS,
    Codec,
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    encode,
    subjects,
)
from harmony_fleet.contracts.identity import BUCKET_IDENTITIES, DEVICE_IDENTITY, DeviceIdentity
from harmony_fleet.contracts.lease import BUCKET_LEASE, OPERATOR_LEASE
from harmony_fleet.contracts.logs import (
    ALL_LOGS,
    LOG_LINE_MAX_BYTES,
    SOURCE_UNIT_PREFIX,
    STORED_UNITS,
)
from harmony_fleet.contracts.rollout import (
    BUCKET_ROLLOUT_PROGRESS,
    BUCKET_ROLLOUT_STATUS,
    BUCKET_ROLLOUTS,
)
from harmony_fleet.core.upgrade.requests import Follow, Outcome, Until, rollback_marker
from harmony_fleet.errors import Conflict

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class BucketDef(Generic[T]):
    """One KV bucket of the fleet: everything but the replicas, which the deployment picks."""

    name: str
    codec: Codec[T]
    description: str
    history: int = 5
    max_value_size: int = MAX_MESSAGE_BYTES
    """Larger values are refused by the server (a writer must trim first: see the status)."""

    def config(self, replicas: int) -> KeyValueConfig:
        return kv_config(self.name, self.description, self.history, self.max_value_size, replicas)


DEVICES = BucketDef(
    subjects.BUCKET_DEVICES, DEVICE_RECORD, "harmony-fleet: the device registry (operator)"
)
MARKERS = BucketDef(
    subjects.BUCKET_UPGRADE_MARKER,
    UPGRADE_MARKER,
    "harmony-fleet: what each device should install (write_marker, compare-and-set)",
)
STATUSES = BucketDef(
    subjects.BUCKET_UPGRADE_STATUS,
    UPGRADE_STATUS,
    "harmony-fleet: how each device's latest upgrade is going (its agent)",
)
IDENTITIES = BucketDef(
    BUCKET_IDENTITIES,
    DEVICE_IDENTITY,
    "harmony-fleet: devices issued credentials, revoked or not (fleet credentials)",
    history=1,
)
# Rollouts (docs/rollouts.md): open them with ``FleetKV.open(ROLLOUTS)`` and so on.
ROLLOUTS = BucketDef(BUCKET_ROLLOUTS, ROLLOUT, "harmony-fleet: rollouts (fleet rollout)")
ROLLOUT_STATUSES = BucketDef(BUCKET_ROLLOUT_STATUS, ROLLOUT_STATUS, "harmony-fleet: rollout phases")
ROLLOUT_PROGRESS = BucketDef(
    BUCKET_ROLLOUT_PROGRESS, DEVICE_PROGRESS, "harmony-fleet: rollout devices", history=1
)
#: The active operator's lease (ADR-023): written by operators only, compare-and-set.
LEASE = BucketDef(
    BUCKET_LEASE, OPERATOR_LEASE, "harmony-fleet: the active operator's lease", history=1
)
BUCKETS: tuple[BucketDef[Any], ...] = (
    DEVICES,
    MARKERS,
    STATUSES,
    IDENTITIES,
    ROLLOUTS,
    ROLLOUT_STATUSES,
    ROLLOUT_PROGRESS,
    LEASE,
)


#: The signed release repository's metadata (docs/releases.md): key = the TUF file name as
#: ngclient asks for it (``1.root.json``, ``timestamp.json``, ``3.snapshot.json``, ...).
TUF_METADATA = RawBucketDef(
    "fleet_tuf", "harmony-fleet: signed release metadata (TUF; fleet release publish)"
)
#: The agent artifacts the metadata signs, named ``<sha256>.<target path>``.
ARTIFACTS = ObjectStoreDef(
    "fleet_artifacts", "harmony-fleet: agent artifacts (TUF targets; fleet release publish)"
)
RAW_BUCKETS: tuple[RawBucketDef, ...] = (TUF_METADATA,)
OBJECT_STORES: tuple[ObjectStoreDef, ...] = (ARTIFACTS,)

#: The log stream's name (docs/logs.md).
LOG_STREAM = "FLEET_LOGS"
#: Subjects the log stream keeps one device's lines under (``agent``, ``units``).
STORED_SUBJECTS_PER_DEVICE = 2


@dataclass(frozen=True, kw_only=True)
class LogStreamLimits:
    """How much log history the stream keeps: per device, not for the fleet as a whole.

    Defaults: a week, 10k lines per stored subject, no fleet-wide byte ceiling. A device stores
    its lines under :data:`STORED_SUBJECTS_PER_DEVICE` subjects (its agent's, and one for all its
    units: the stream's subject transform folds ``fleet.<d>.logs.unit.*`` into
    ``fleet.<d>.logs.units``; its permissions allow it no other log subject). JetStream has no
    per-subject *byte* limit, so a device's quota is ``2 x max_msgs_per_subject x
    max_msg_size`` (:attr:`device_quota_bytes`): a flood evicts only the flooder's own older
    lines. A fleet-wide ``max_bytes`` (discard old) would let one device evict every other's
    history, so there is none unless ``max_devices`` is given, and then it is ``max_devices``
    quotas: the arithmetic holds while the fleet has at most that many devices.
    """

    max_age_s: float = 7 * 24 * 3600.0
    max_msgs_per_subject: int = 10_000
    max_msg_size: int = LOG_LINE_MAX_BYTES
    max_devices: int | None = None
    """With it, a byte ceiling of that many device quotas; without, none (-1)."""

    @property
    def device_quota_bytes(self) -> int:
        """The most one device can keep in the stream (worst case: every line at the limit)."""
        return STORED_SUBJECTS_PER_DEVICE * self.max_msgs_per_subject * self.max_msg_size

    @property
    def max_bytes(self) -> int:
        if self.max_devices is None:
            return -1
        return self.max_devices * self.device_quota_bytes

    def config(self, replicas: int = 1) -> StreamConfig:
        return StreamConfig(
            name=LOG_STREAM,
            description="harmony-fleet: recent log lines of every device (docs/logs.md)",
            subjects=[ALL_LOGS],
            subject_transform=SubjectTransform(
                src=f"{subjects.PREFIX}.*.logs.{SOURCE_UNIT_PREFIX}*",
                dest=f"{subjects.PREFIX}.{{{{wildcard(1)}}}}.logs.{STORED_UNITS}",
            ),
            max_age=self.max_age_s,
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_bytes=self.max_bytes,
            max_msg_size=self.max_msg_size,
            discard=DiscardPolicy.OLD,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
        )


def fit_status(status: UpgradeStatus, limit: int = MAX_MESSAGE_BYTES) -> UpgradeStatus:
    """``status`` as it is when it fits in ``limit`` bytes; otherwise trimmed until it does.

    The candidate's log tail goes first, oldest lines first (one line says how many went), then
    the error detail is shortened from its end. A status too large to store would be refused
    for ever, and the device would look stuck in its previous phase.
    """
    size = len(encode(status))
    if size <= limit:
        return status
    tail = list(status.candidate_log_tail)
    dropped = 0
    while tail and size > limit:
        excess = size - limit
        while tail and excess > 0:
            excess -= len(encode(tail[0])) + 1
            tail.pop(0)
            dropped += 1
        note = [f"[{dropped} earlier line(s) trimmed to fit the status]"]
        status = msgspec.structs.replace(status, candidate_log_tail=note + tail)
        size = len(encode(status))
    detail = status.error_detail
    while size > limit and detail:
        detail = detail[: max(0, len(detail) - (size - limit) - 16)]
        status = msgspec.structs.replace(status, error_detail=detail + " [trimmed]")
        size = len(encode(status))
    if size > limit:  # nothing left to trim but the note itself
        status = msgspec.structs.replace(status, candidate_log_tail=[], error_detail="[trimmed]")
    return status


class FleetKV:
    """The fleet's buckets over one connection, opened (never created) on first use."""

    def __init__(self, nc: NatsClient | JetStreamContext, *, fence: Fence | None = None) -> None:
        self.js = nc if isinstance(nc, JetStreamContext) else nc.jetstream()
        self.fence = fence
        self._open: dict[str, TypedKV[Any]] = {}

    async def open(self, bucket: BucketDef[T]) -> TypedKV[T]:
        kv = self._open.get(bucket.name)
        if kv is None:
            raw = await open_bucket(self.js, bucket.name)
            kv = self._open[bucket.name] = TypedKV(
                raw,
                bucket.codec,
                name=bucket.name,
                before_write=self.fence.check if self.fence is not None else None,
            )
        return cast(TypedKV[T], kv)

    async def verify_fence(self) -> None:
        """Check the lease on the server (once per pass of writes); nothing without a fence."""
        if self.fence is not None:
            await self.fence.verify()

    async def devices(self) -> TypedKV[DeviceRecord]:
        return await self.open(DEVICES)

    async def markers(self) -> TypedKV[UpgradeMarker]:
        return await self.open(MARKERS)

    async def statuses(self) -> TypedKV[UpgradeStatus]:
        return await self.open(STATUSES)

    async def identities(self) -> TypedKV[DeviceIdentity]:
        return await self.open(IDENTITIES)


def _kv(nc: NatsClient | FleetKV) -> FleetKV:
    return nc if isinstance(nc, FleetKV) else FleetKV(nc)


async def write_marker(
    nc: NatsClient | FleetKV, marker: UpgradeMarker
) -> UpgradeMarker | Undecodable | None:
    """Write ``marker`` with compare-and-set; return what it replaced, if anything. Through a
    fenced :class:`FleetKV` the marker carries the operator's lease epoch.

    An undecodable marker is replaced too (at its revision): an unreadable value must never
    make every later request for the device a conflict.
    """
    kv = _kv(nc)
    if kv.fence is not None:
        marker = msgspec.structs.replace(marker, lease_epoch=kv.fence.epoch)
    markers = await kv.markers()
    key = subjects.kv_key(marker.device_id)
    previous = await markers.read(key)
    try:
        if previous is None:
            await markers.create(key, marker)
        else:
            await markers.update(key, marker, last=previous.revision)
    except Conflict:
        raise Conflict(
            "another upgrade was requested for this device at the same time; "
            "look at `fleet upgrade-status` and try again"
        ) from None
    if isinstance(previous, Undecodable):
        log.warning("undecodable marker replaced", extra={"device_id": marker.device_id})
        return previous
    return previous.value if previous is not None else None


@dataclass(frozen=True)
class DeviceUpgrade:
    """What the fleet knows about one device's upgrades, read at one moment."""

    record: DeviceRecord | None
    status: UpgradeStatus | Undecodable | None
    marker: UpgradeMarker | Undecodable | None

    @property
    def decoded_status(self) -> UpgradeStatus | None:
        return None if isinstance(self.status, Undecodable) else self.status

    @property
    def decoded_marker(self) -> UpgradeMarker | None:
        return None if isinstance(self.marker, Undecodable) else self.marker


async def read_device(nc: NatsClient | FleetKV, device: str) -> DeviceUpgrade:
    """The device's registry record, latest status and current marker (one read each)."""
    kv = _kv(nc)
    key = subjects.kv_key(device)
    record = await (await kv.devices()).read(key)
    status = await (await kv.statuses()).read(key)
    marker = await (await kv.markers()).read(key)
    return DeviceUpgrade(
        record=record.value if isinstance(record, Entry) else None,
        status=status.value if isinstance(status, Entry) else status,
        marker=marker.value if isinstance(marker, Entry) else marker,
    )


async def plan_rollback(
    nc: NatsClient | FleetKV,
    device: str,
    *,
    timeouts: UpgradeTimeouts,
    force: bool = False,
    by: str = "",
) -> UpgradeMarker:
    """Read what the fleet knows about ``device`` and build its rollback marker (not written)."""
    seen = await read_device(nc, device)
    return rollback_marker(
        seen.record,
        seen.decoded_status,
        seen.decoded_marker,
        device=device,
        timeouts=timeouts,
        force=force,
        requested_by=by,
    )


@dataclass(frozen=True)
class Reading:
    """One step of :func:`follow`: what was read, and the outcome once there is one."""

    seen: DeviceUpgrade
    outcome: Outcome | None


async def follow(
    nc: NatsClient | FleetKV,
    device: str,
    upgrade_id: str,
    *,
    until: Until = Until.SUCCEEDED,
    poll_s: float = 0.2,
) -> AsyncIterator[Reading]:
    """Read the device's upgrade state every ``poll_s`` until upgrade ``upgrade_id`` ends.

    Yields every reading that differs from the one before, the last one with its outcome
    (:class:`~harmony_fleet.core.upgrade.requests.Outcome`). Bound it with a timeout.
    """
    kv = _kv(nc)
    judge = Follow(upgrade_id, until=until)
    last: DeviceUpgrade | None = None
    while True:
        seen = await read_device(kv, device)
        outcome = judge.observe(seen.decoded_status, seen.record, seen.decoded_marker)
        if seen != last or outcome is not None:
            yield Reading(seen, outcome)
        if outcome is not None:
            return
        last = seen
        await asyncio.sleep(poll_s)
