"""The upgrade coordinator: the only place a commit is authorised (ADR-022, step 5).

For every device with a marker in flight it keeps a :class:`~harmony_fleet.core.upgrade.commit.
CommitView` (marker, the device's old main instance, the statuses the agent wrote, the heartbeats
the operator itself received) and asks :func:`~harmony_fleet.core.upgrade.commit.decide` what to
do. It sends ``upgrade_stop`` only on ``SEND_STOP``, i.e. after it has itself seen the target
version heartbeat from a new instance of that device, received after the marker; it retries until
the stop is acknowledged or the upgrade is terminal. It reflects the phase onto the registry.

After the commit it holds at "committed, watched" (phase Committed, with the new main instance
it saw and the end of the device's watch window, stored as ``UpgradeSummary.watch_until``: the
reader renders it, in its own time zone) until the agent writes Succeeded or RolledBack:
a new version that starts and then crash-loops is rolled back by the device, and the registry
must never have said Succeeded in between. A terminal status always overrides what was shown.

Restarts: markers and statuses are in KV and read back at start; the old instance and the
instances known before the marker are rebuilt from the registry (``instances_before``). A stop
sent twice is harmless: the agent commits once per ``upgrade_id`` and answers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from harmony_fleet._tasks import cancel_and_wait, wait_event
from harmony_fleet.adapters.nats.commands import CommandsClient
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fence import Fence
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import TypedKV, Undecodable
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    Heartbeat,
    Role,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeSummary,
)
from harmony_fleet.contracts.ids import InstanceId
from harmony_fleet.core.upgrade.commit import (
    CommitView,
    DecisionKind,
    ObservedHeartbeat,
    decide,
    instances_before,
)
from harmony_fleet.errors import FleetError
from harmony_fleet.operator.registry import Registry

log = logging.getLogger(__name__)

V = TypeVar("V", UpgradeMarker, UpgradeStatus)

#: Heartbeats kept per upgrade (only those of the target version are kept at all).
MAX_OBSERVED = 16


@dataclass
class _Tracked:
    view: CommitView
    finished: bool = False
    sending: bool = False
    watching: tuple[str, float | None] | None = None
    """The (reason, end of window) last reflected as "committed, watched" (once per change)."""


class Coordinator:
    """Runs inside the operator; one instance per operator process."""

    def __init__(
        self,
        registry: Registry,
        *,
        tick_s: float = 0.1,
        resync_s: float = 10.0,
        fence: Fence | None = None,
    ) -> None:
        self.registry = registry
        self.fence = fence
        """The operator lease (ADR-023): no stop is sent unless it verifies, and each carries
        its epoch."""
        self.tick_s = tick_s
        self.resync_s = resync_s
        self.tracked: dict[str, _Tracked] = {}
        self.stops_sent = 0
        self.key_mismatches = 0
        """Markers and statuses dropped because their ``device_id`` is not their key's: a
        device writing its own status key with a body naming another device (a security
        event: docs/security.md)."""
        self.markers: TypedKV[UpgradeMarker] | None = None
        self.statuses: TypedKV[UpgradeStatus] | None = None
        self._wake = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._marker_listeners: list[Callable[[UpgradeMarker, float], None]] = []
        self._status_listeners: list[Callable[[UpgradeStatus, float], None]] = []
        registry.add_listener(self.on_heartbeat)

    def add_listeners(
        self,
        *,
        on_marker: Callable[[UpgradeMarker, float], None],
        on_status: Callable[[UpgradeStatus, float], None],
    ) -> None:
        """Called with every marker and status the coordinator takes from its buckets (its
        watches and resyncs: the latest value of every key, admitted devices only), after it
        handled them: the rollouts' view of the fleet without reading the buckets again."""
        self._marker_listeners.append(on_marker)
        self._status_listeners.append(on_status)

    def _took_marker(self, marker: UpgradeMarker, now: float) -> None:
        self.on_marker(marker, now)
        for listener in self._marker_listeners:
            listener(marker, now)

    def _took_status(self, status: UpgradeStatus, now: float) -> None:
        self.on_status(status, now)
        for listener in self._status_listeners:
            listener(status, now)

    # -- inputs -----------------------------------------------------------------------------
    def on_heartbeat(self, hb: Heartbeat, now: float) -> None:
        """Registry listener: keep the heartbeats that could matter to a commit."""
        tracked = self.tracked.get(hb.device_id)
        if tracked is None or tracked.finished:
            return
        if hb.agent_version != tracked.view.marker.target_version:
            return
        observed = ObservedHeartbeat.of(hb, received_at=now)
        kept = tuple(h for h in tracked.view.heartbeats if h.instance_id != observed.instance_id)[
            -MAX_OBSERVED + 1 :
        ]
        tracked.view = replace(tracked.view, heartbeats=(*kept, observed))
        self._wake.set()

    def on_marker(self, marker: UpgradeMarker, now: float) -> None:
        current = self.tracked.get(marker.device_id)
        if current is not None and current.view.marker.upgrade_id == marker.upgrade_id:
            return
        state = self.registry.devices.get(marker.device_id)
        old: InstanceId | None = None
        before: frozenset[InstanceId] = frozenset()
        # Our own clock only: ``requested_at`` is the requester's (invariant 9). A marker found
        # at start may be older than ``now``; its candidate is still recognised by upgrade_id.
        seen_at = now
        if state is not None:
            mains = [i for i in state.instances.values() if i.role is Role.MAIN]
            if mains:
                old = max(mains, key=lambda i: i.last_seen).instance_id
            before = instances_before(state.record(now).instances, seen_at)
        self.tracked[marker.device_id] = _Tracked(
            CommitView(
                marker=marker,
                marker_seen_at=seen_at,
                old_instance_id=old,
                instances_before_marker=before,
            )
        )
        self._reflect(marker.device_id, AgentUpgradePhase.REQUESTED, now, message="marker written")
        log.info(
            "upgrade tracked",
            extra={
                "device_id": marker.device_id,
                "upgrade_id": marker.upgrade_id,
                "target": marker.target_version,
                "old_instance": old,
            },
        )
        self._wake.set()

    def on_status(self, status: UpgradeStatus, now: float) -> None:
        tracked = self.tracked.get(status.device_id)
        if tracked is None or tracked.view.marker.upgrade_id != status.upgrade_id:
            # A status for an upgrade we do not track (e.g. ended before we started): reflect it.
            self.registry.set_upgrade(status.device_id, _summary(status, now))
            return
        if tracked.view.status == status:
            return
        tracked.view = replace(tracked.view, status=status, status_seen_at=now)
        if tracked.finished and not status.phase.terminal:
            return  # never let a late non-terminal status undo a terminal one we already saw
        tracked.watching = None  # the next step reflects "committed, watched" again if it holds
        self._reflect(status.device_id, status.phase, now, status=status)
        self._wake.set()

    # -- decisions --------------------------------------------------------------------------
    def _reflect(
        self,
        device: str,
        phase: AgentUpgradePhase,
        now: float,
        *,
        status: UpgradeStatus | None = None,
        message: str = "",
        watch_until: float | None = None,
    ) -> None:
        tracked = self.tracked.get(device)
        if tracked is None:
            return
        m = tracked.view.marker
        base = _summary(status, now) if status is not None else None
        self.registry.set_upgrade(
            device,
            UpgradeSummary(
                upgrade_id=m.upgrade_id,
                phase=phase,
                target_version=m.target_version,
                message=(message or (base.message if base else ""))[:500],
                updated_at=now,
                progress=base.progress if base else None,
                error_code=base.error_code if base else "",
                error_detail=base.error_detail if base else "",
                watch_until=watch_until
                if watch_until is not None
                else (base.watch_until if base else None),
            ),
        )

    async def step(self, client: CommandsClient, now: float) -> None:
        """Decide for every tracked upgrade once."""
        for device, tracked in list(self.tracked.items()):
            if tracked.finished or tracked.sending:
                continue
            decision = decide(tracked.view, now)
            if decision.kind is DecisionKind.SEND_STOP:
                tracked.view = replace(tracked.view, stop=tracked.view.stop.sent_at(now))
                tracked.sending = True
                task = asyncio.ensure_future(self._send_stop(client, device, tracked))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            elif decision.kind is DecisionKind.WATCHING:
                watching = (decision.reason, decision.watch_until)
                if tracked.watching != watching:
                    tracked.watching = watching
                    self._reflect(
                        device,
                        AgentUpgradePhase.COMMITTED,
                        now,
                        message=decision.reason,
                        watch_until=decision.watch_until,
                    )
                    log.info("upgrade committed, watching", extra={"device_id": device})
            elif decision.kind is DecisionKind.FINISHED:
                tracked.finished = True
                log.info("upgrade finished", extra={"device_id": device, "reason": decision.reason})

    async def _send_stop(self, client: CommandsClient, device: str, tracked: _Tracked) -> None:
        uid = tracked.view.marker.upgrade_id
        try:
            self.stops_sent += 1
            # Only the old agent armed for this upgrade may answer for the device (its candidate
            # listens on the same subject).
            old = tracked.view.old_instance_id
            if self.fence is not None:
                await self.fence.verify()  # a deposed operator sends no stop
            reply = await client.upgrade_stop(
                device,
                uid,
                timeout_s=3.0,
                only_from=old,
                lease_epoch=self.fence.epoch if self.fence is not None else 0,
            )
        except FleetError as exc:
            log.warning(
                "upgrade_stop not delivered",
                extra={"device_id": device, "upgrade_id": uid, "error": str(exc)},
            )
            return
        finally:
            tracked.sending = False
        log.info(
            "upgrade_stop answered",
            extra={"device_id": device, "upgrade_id": uid, "code": reply.code.value},
        )
        if self.tracked.get(device) is tracked:
            tracked.view = replace(tracked.view, stop=tracked.view.stop.replied(reply.code))
            self._wake.set()

    # -- runtime ----------------------------------------------------------------------------
    async def open(self, nc: NatsClient) -> None:
        kv = FleetKV(nc)
        self.markers = await kv.markers()
        self.statuses = await kv.statuses()

    async def resync(self) -> None:
        """Read every marker and status again (start, and a slow safety net for watchers)."""
        assert self.markers is not None and self.statuses is not None
        now = time.time()
        for item in await self.markers.snapshot():
            if isinstance(item, Undecodable):
                log.warning("marker skipped", extra={"key": item.key, "field": item.error.field})
            elif self._keyed(self.markers.name, item.key, item.value):
                self._took_marker(item.value, now)
        for sitem in await self.statuses.snapshot():
            if not isinstance(sitem, Undecodable) and self._keyed(
                self.statuses.name, sitem.key, sitem.value
            ):
                self._took_status(sitem.value, now)

    def _keyed(self, bucket: str, key: str, value: UpgradeMarker | UpgradeStatus) -> bool:
        """True when ``value`` names the device of its key and that device is admitted (a live
        identity: :mod:`~harmony_fleet.operator.admission`); otherwise drop it and count it.

        Each device may write only its own status key, but what it writes there is its own
        choice: the key is what the server vouches for, never the body.
        """
        if value.device_id != key:
            self.key_mismatches += 1
            log.warning(
                "security: value dropped, its device_id is not its key's",
                extra={"bucket": bucket, "key": key, "claimed": value.device_id},
            )
            return False
        if not self.registry.admits(key):  # never issued credentials, or revoked
            self.registry.security_event("not_issued", key, time.time(), f"{bucket} value")
            return False
        return True

    async def _watch(self, kv: TypedKV[V], handle: Callable[[V, float], None]) -> None:
        async for entry in kv.values():
            if self._keyed(kv.name, entry.key, entry.value):
                handle(entry.value, time.time())

    async def run(self, nc: NatsClient) -> None:
        """The coordinator's loop, as an operator extension."""
        while True:
            try:
                await self.open(nc)
                await self.resync()
                break
            except FleetError as exc:
                log.warning("upgrade buckets not available yet", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
        assert self.markers is not None and self.statuses is not None
        client = CommandsClient(nc)
        tasks = [
            asyncio.ensure_future(self._watch(self.markers, self._took_marker)),
            asyncio.ensure_future(self._watch(self.statuses, self._took_status)),
        ]
        last_resync = time.monotonic()
        try:
            while True:
                self._wake.clear()
                await self.step(client, time.time())
                if time.monotonic() - last_resync > self.resync_s:
                    last_resync = time.monotonic()
                    with contextlib.suppress(FleetError):
                        await self.resync()
                await wait_event(self._wake, self.tick_s)
        finally:
            # And wait for them (a watch stops its consumer on its way out): a stopped
            # coordinator leaves no task of its own running.
            await cancel_and_wait(tasks)


def _message(status: UpgradeStatus) -> str:
    """The summary's text for readers that predate its structured fields (no clock times)."""
    if status.error_code:
        return f"{status.error_code}: {status.error_detail}".strip(": ")
    if status.progress is not None and status.progress.bytes_total:
        pct = 100 * status.progress.bytes_done / status.progress.bytes_total
        return f"{pct:.0f}% downloaded"
    if status.phase is AgentUpgradePhase.COMMITTED and status.watch_until is not None:
        return "the device watches the new main"
    return ""


def _summary(status: UpgradeStatus, now: float) -> UpgradeSummary:
    """The registry's summary of ``status``: structured fields, rendered by whoever reads them."""
    return UpgradeSummary(
        upgrade_id=status.upgrade_id,
        phase=status.phase,
        target_version=status.to_version,
        message=_message(status),
        updated_at=now,
        progress=status.progress,
        error_code=status.error_code,
        error_detail=status.error_detail[:500],
        watch_until=status.watch_until,
    )
