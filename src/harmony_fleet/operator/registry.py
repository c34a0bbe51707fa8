"""The device registry: heartbeats in, coalesced KV writes out.

The hot path is :meth:`Registry.ingest`, called once per heartbeat: decode (msgspec, in C), one
dict lookup, a few attribute writes, and a ``dirty`` flag when something a person would notice
changed. KV writes happen elsewhere (:meth:`Registry.due`), at most once per change plus a slow
refresh, so the write rate does not grow with the heartbeat rate (see ``core.presence``).

Only devices with a live identity are admitted (``admitted``, kept by the operator from the
identities bucket; :mod:`~harmony_fleet.operator.admission`): anything else is dropped and
counted as a security event.

The operator's own clock is used for ``last_seen``: an agent's clock may be wrong, and the
question "when did *we* last hear from it" is what presence needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field

from harmony_fleet.contracts import (
    HEARTBEAT,
    DeviceId,
    DeviceRecord,
    Heartbeat,
    InstanceId,
    InstanceSeen,
    Role,
    UpgradeSummary,
    Version,
    subjects,
)
from harmony_fleet.core.presence import (
    MAX_INSTANCES,
    PresencePolicy,
    clamp_interval,
    is_online,
    needs_write,
)
from harmony_fleet.core.security import SecurityEvents
from harmony_fleet.errors import InvalidMessage

log = logging.getLogger("harmony_fleet.operator.registry")

#: Something that wants every accepted heartbeat with the operator's receive time
#: (the upgrade coordinator).
HeartbeatListener = Callable[[Heartbeat, float], None]
#: Something that wants every change of a device's upgrade summary (the dashboard's timeline).
UpgradeListener = Callable[[str, UpgradeSummary | None], None]

_PREFIX = f"{subjects.PREFIX}."
_PREFIX_LEN = len(_PREFIX)
_SUFFIX_LEN = len(".heartbeat")


@dataclass(slots=True)
class _Instance:
    instance_id: InstanceId
    agent_version: Version
    role: Role
    first_seen: float
    last_seen: float
    last_seq: int


@dataclass(slots=True)
class DeviceState:
    """Mutable in-memory view of one device; converted to a :class:`DeviceRecord` to write."""

    device_id: DeviceId
    current_version: Version
    online: bool
    first_seen: float
    last_seen: float
    interval_s: float
    labels: dict[str, str]
    instances: dict[str, _Instance] = field(default_factory=dict)
    upgrade: UpgradeSummary | None = None
    dirty: bool = True
    last_written: float = 0.0

    def record(self, now: float) -> DeviceRecord:
        ordered = sorted(self.instances.values(), key=lambda i: i.last_seen, reverse=True)
        return DeviceRecord(
            device_id=self.device_id,
            current_version=self.current_version,
            online=self.online,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            heartbeat_interval_s=self.interval_s,
            instances=[
                InstanceSeen(
                    instance_id=i.instance_id,
                    agent_version=i.agent_version,
                    role=i.role,
                    first_seen=i.first_seen,
                    last_seen=i.last_seen,
                    last_seq=i.last_seq,
                )
                for i in ordered[:MAX_INSTANCES]
            ],
            labels=dict(self.labels),
            upgrade=self.upgrade,
            updated_at=now,
        )

    @classmethod
    def from_record(cls, rec: DeviceRecord, *, now: float) -> DeviceState:
        """Rebuild from the KV after a restart. ``last_seen`` becomes ``now`` for presence
        purposes only if the record was online, so a device gets a full timeout to show up."""
        state = cls(
            device_id=rec.device_id,
            current_version=rec.current_version,
            online=rec.online,
            first_seen=rec.first_seen,
            last_seen=max(rec.last_seen, now) if rec.online else rec.last_seen,
            interval_s=rec.heartbeat_interval_s,
            labels=dict(rec.labels),
            upgrade=rec.upgrade,
            dirty=False,
            last_written=now,
        )
        for i in rec.instances:
            state.instances[i.instance_id] = _Instance(
                i.instance_id, i.agent_version, i.role, i.first_seen, i.last_seen, i.last_seq
            )
        return state


class Registry:
    """All devices the operator knows, in memory, with the coalescing rules applied."""

    def __init__(
        self, policy: PresencePolicy | None = None, *, admitted: Container[str] | None = None
    ) -> None:
        self.policy = policy or PresencePolicy()
        self.devices: dict[str, DeviceState] = {}
        self.ingested = 0
        self.rejected = 0
        self.admitted = admitted
        """Device ids whose heartbeats are admitted (live identities, kept up to date by the
        operator: :mod:`~harmony_fleet.operator.admission`); None admits every device."""
        self.security = SecurityEvents()
        """Security events by kind: ``not_issued`` (a heartbeat or status of a device without
        a live identity), ``redelivered`` (a heartbeat that JetStream delivered: stored data
        sent to a heartbeat subject, docs/security.md)."""
        self._listeners: list[HeartbeatListener] = []
        self._on_change: list[Callable[[str], None]] = []
        self._upgrade_listeners: list[UpgradeListener] = []

    def add_listener(self, listener: HeartbeatListener) -> None:
        """Called with every accepted heartbeat and the operator's receive time."""
        self._listeners.append(listener)

    def add_change_listener(self, listener: Callable[[str], None]) -> None:
        """Called with a device id when what a rollout reads of it changed: it came or went
        (presence), its main version or its labels changed (not on every heartbeat)."""
        self._on_change.append(listener)

    def _changed(self, device: str) -> None:
        for listener in self._on_change:
            listener(device)

    def add_upgrade_listener(self, listener: UpgradeListener) -> None:
        """Called with the device and its new summary whenever :meth:`set_upgrade` changes it
        (not on the heartbeat path)."""
        self._upgrade_listeners.append(listener)

    def load(self, record: DeviceRecord, *, now: float) -> None:
        self.devices[record.device_id] = DeviceState.from_record(record, now=now)

    def ingest(self, subject: str, data: bytes, now: float) -> Heartbeat | None:
        """Take one heartbeat message; returns it, or None if it was dropped (and logged)."""
        # fleet.<device>.heartbeat: slicing is cheaper than splitting on the hot path.
        sender = subject[_PREFIX_LEN:-_SUFFIX_LEN] if subject.startswith(_PREFIX) else subject
        try:
            hb = HEARTBEAT.decode(data)
        except InvalidMessage as exc:
            self.rejected += 1
            self.security_event(
                "undecodable", sender, now, "heartbeat", detail=f"{exc.field}: {exc.reason}"
            )
            return None
        if sender != hb.device_id:
            self.rejected += 1
            self.security_event(
                "subject_mismatch", sender, now, "heartbeat", detail=f"claims {hb.device_id}"
            )
            return None
        if self.admitted is not None and hb.device_id not in self.admitted:
            self.rejected += 1
            self.security_event("not_issued", hb.device_id, now, "heartbeat")
            return None
        self.ingested += 1
        self.observe(hb, now)
        if self._listeners:
            for listener in self._listeners:
                listener(hb, now)
        return hb

    def admits(self, device: str) -> bool:
        """True when ``device``'s heartbeats and status are taken (a live identity)."""
        return self.admitted is None or device in self.admitted

    def security_event(
        self, kind: str, device: str, now: float, what: str, *, detail: str = ""
    ) -> None:
        """Count a dropped message as a security event; log it (at most once a minute per
        device and kind, saying how many went unlogged: a device sending garbage in a loop
        cannot flood the operator's log)."""
        unlogged = self.security.record(kind, device[:200], now)
        if unlogged is not None:
            extra = {"device_id": device[:200], "kind": kind, "unlogged": unlogged}
            if detail:
                extra["detail"] = detail[:300]
            log.warning("security: %s dropped (%s)", what, kind, extra=extra)

    def forget(self, device: str) -> bool:
        """Take ``device`` out of the registry (its identity was revoked); True if it was in."""
        return self.devices.pop(device, None) is not None

    def observe(self, hb: Heartbeat, now: float) -> None:
        state = self.devices.get(hb.device_id)
        changed = state is None or not state.online
        if state is None:
            state = DeviceState(
                device_id=hb.device_id,
                current_version=hb.agent_version,
                online=True,
                first_seen=now,
                last_seen=now,
                interval_s=clamp_interval(hb.interval_s),
                labels=dict(hb.labels),
            )
            self.devices[hb.device_id] = state
        state.last_seen = now
        inst = state.instances.get(hb.instance_id)
        if inst is None:
            state.instances[hb.instance_id] = _Instance(
                hb.instance_id, hb.agent_version, hb.role, now, now, hb.seq
            )
            if len(state.instances) > MAX_INSTANCES:
                oldest = min(state.instances.values(), key=lambda i: i.last_seen)
                del state.instances[oldest.instance_id]
            state.dirty = True
        else:
            inst.last_seen = now
            inst.last_seq = hb.seq
            if inst.role is not hb.role or inst.agent_version != hb.agent_version:
                inst.role = hb.role
                inst.agent_version = hb.agent_version
                state.dirty = True
        if hb.role is Role.MAIN and state.current_version != hb.agent_version:
            state.current_version = hb.agent_version
            state.dirty = changed = True
        if not state.online:
            state.online = True
            state.dirty = True
        # The hot path: an unchanged interval costs one comparison (no clamp call).
        if hb.interval_s != state.interval_s:
            interval = clamp_interval(hb.interval_s)
            if interval != state.interval_s:
                state.interval_s = interval
                state.dirty = True
        if hb.labels and hb.labels != state.labels:
            state.labels = dict(hb.labels)
            state.dirty = changed = True
        if changed and self._on_change:
            self._changed(hb.device_id)

    def set_upgrade(self, device: str, summary: UpgradeSummary | None) -> None:
        """Reflect an upgrade's phase onto the device's record (the coordinator calls this)."""
        state = self.devices.get(device)
        if state is not None and state.upgrade != summary:
            state.upgrade = summary
            state.dirty = True
            for listener in self._upgrade_listeners:
                listener(device, summary)

    def sweep(self, now: float) -> list[DeviceId]:
        """Mark devices offline whose heartbeats stopped; return the ids that changed."""
        changed = []
        for state in self.devices.values():
            if state.online and not is_online(
                last_seen=state.last_seen, interval_s=state.interval_s, now=now, policy=self.policy
            ):
                state.online = False
                state.dirty = True
                changed.append(state.device_id)
        for device in changed:
            self._changed(device)
        return changed

    def due(self, now: float) -> Iterator[DeviceState]:
        """Devices whose record must be written now (changed, or refresh due)."""
        for state in self.devices.values():
            if needs_write(
                dirty=state.dirty, last_written=state.last_written, now=now, policy=self.policy
            ):
                yield state
