"""One simulator process: one NATS connection serving many simulated devices.

The connection holds a ``sim`` credential (docs/sim.md), so every subject and key a device
touches is the real one and the server checks it: heartbeats on ``fleet.<device>.heartbeat``,
statuses put at ``fleet_upgrade_status/<device>`` (the status codec, through
:class:`~harmony_fleet.adapters.nats.kv.TypedKV`), markers read by direct get whenever a write
crosses ``$KV.fleet_upgrade_marker.<device>`` (as :meth:`~harmony_fleet.adapters.nats.kv.
TypedKV.follow` does for an agent, with one wildcard subscription for all of this process's
devices), commands answered on ``fleet.<device>.cmd``. The operator cannot tell these devices
from real agents.

Heartbeats come from one scheduler (a heap of due times, each device jittered by 10 %), not a
task per device: 10,000 devices at 5 s are 2,000 messages a second in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Coroutine, Iterable
from typing import Any

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Entry, TypedKV
from harmony_fleet.adapters.nats.provenance import from_jetstream
from harmony_fleet.contracts import (
    COMMAND,
    Reply,
    ReplyCode,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeStopArgs,
    Verb,
    decode_args,
    encode,
    subjects,
)
from harmony_fleet.contracts.ids import Version
from harmony_fleet.errors import FleetError, InvalidMessage
from harmony_fleet.sim.config import Fault, SimConfig, profiles
from harmony_fleet.sim.device import SimDevice, forever, play_upgrade

log = logging.getLogger(__name__)

#: Concurrent reads of markers at start (one direct get per device).
START_READS = 64
#: Heartbeat jitter, as the agent's (± 10 %).
JITTER = 0.1


class SimWorker:
    """The devices ``config.indexes(process)`` on one connection; :meth:`run` until ``stop``."""

    def __init__(
        self,
        config: SimConfig,
        options: NatsOptions,
        *,
        process: int = 0,
    ) -> None:
        self.config = config
        self.options = options
        self.process = process
        now = time.time()
        self.devices: dict[str, SimDevice] = {
            p.device_id: SimDevice.new(p, config, now)
            for p in profiles(config, config.indexes(process))
        }
        for device in self.devices.values():
            if Fault.OFFLINE in device.profile.faults:
                device.away_until = math.inf if config.offline_after_s <= 0 else None
        self.stats: Counter[str] = Counter()
        self.nc: NatsClient | None = None
        self.statuses: TypedKV[UpgradeStatus] | None = None
        self.markers: TypedKV[UpgradeMarker] | None = None
        self.ready = asyncio.Event()
        self._heap: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._rng = random.Random(f"{config.seed}/{process}")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = time.monotonic()

    # -- the Wire the devices' upgrades use -----------------------------------------------
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def write_status(self, status: UpgradeStatus) -> None:
        assert self.statuses is not None
        try:
            await self.statuses.put(subjects.kv_key(status.device_id), status)
            self.stats["statuses"] += 1
        except FleetError as exc:
            self.stats["status_errors"] += 1
            log.warning("status not written", extra={"device_id": status.device_id, "error": exc})

    def heartbeat_now(self, device: SimDevice) -> None:
        heapq.heappush(self._heap, (time.monotonic(), device.device_id))
        self._wake.set()

    def count(self, what: str) -> None:
        self.stats[what] += 1

    # -- control (tests, the offline fault) -----------------------------------------------
    def set_away(self, devices: Iterable[str], *, for_s: float | None = None) -> None:
        """Take ``devices`` offline (for ``for_s`` seconds; None: until :meth:`set_back`)."""
        until = time.time() + forever(for_s)
        for device in devices:
            self.devices[device].away_until = until

    def set_back(self, devices: Iterable[str]) -> None:
        """Bring ``devices`` back at once: they heartbeat and read their marker again."""
        for device in devices:
            state = self.devices[device]
            state.away_until = None
            self.heartbeat_now(state)
            self._spawn(self._read_marker(device))

    # -- start -----------------------------------------------------------------------------
    async def open(self) -> None:
        self.nc = await connect(self.options.with_name(f"fleet-sim-{self.process}"), log=log)
        kv = FleetKV(self.nc)
        self.statuses = await kv.statuses()
        self.markers = await kv.markers()
        await self.nc.subscribe(f"$KV.{self.markers.name}.*", cb=self._on_marker_write)
        await self.nc.subscribe(subjects.command("*"), cb=self._on_command)
        sem = asyncio.Semaphore(START_READS)

        async def first(device: str) -> None:
            async with sem:
                await self._read_marker(device, at_start=True)

        await asyncio.gather(*(first(d) for d in self.devices))
        now = time.monotonic()
        interval = self.config.heartbeat_s
        for device in self.devices:
            heapq.heappush(self._heap, (now + self._rng.uniform(0, interval), device))
        if self.config.offline_after_s > 0:
            self._spawn(self._go_offline_later())
        self.ready.set()

    async def _go_offline_later(self) -> None:
        await asyncio.sleep(self.config.offline_after_s)
        away = [d for d, s in self.devices.items() if Fault.OFFLINE in s.profile.faults]
        self.set_away(away, for_s=self.config.offline_for_s)

    # -- markers ---------------------------------------------------------------------------
    async def _on_marker_write(self, msg: Any) -> None:
        device = msg.subject.rsplit(".", 1)[-1]
        if device in self.devices:
            self._spawn(self._read_marker(device, woken=True))

    async def _read_marker(
        self, device: str, *, at_start: bool = False, woken: bool = False
    ) -> None:
        """Read ``device``'s marker and play it if it is new. ``woken``: a write crossed the
        key's subject, so a read still answering the known revision is made again shortly
        (:meth:`~harmony_fleet.adapters.nats.kv.TypedKV.read_after_wake`): without it a device
        whose read raced the stream's store of its marker never started (9 of 10,000 in a
        rollout benchmark, the wave waiting for them for ever)."""
        assert self.markers is not None and self.statuses is not None
        state = self.devices[device]
        if not state.online(time.time()):
            return  # away: read again when it is back
        try:
            key = subjects.kv_key(device)
            found = await (
                self.markers.read_after_wake(key, state.marker_revision)
                if woken
                else self.markers.read(key)
            )
            if at_start and isinstance(found, Entry):
                # An earlier simulation's upgrade that ended is not played again.
                status = await self.statuses.get(subjects.kv_key(device))
                if (
                    status is not None
                    and status.value.upgrade_id == found.value.upgrade_id
                    and status.value.phase.terminal
                ):
                    state.finished.add(found.value.upgrade_id)
        except (FleetError, InvalidMessage) as exc:
            self.stats["marker_errors"] += 1
            log.warning("marker not read", extra={"device_id": device, "error": str(exc)})
            return
        if not isinstance(found, Entry) or found.revision == state.marker_revision:
            return
        state.marker_revision = found.revision
        marker = found.value
        if marker.device_id != device or marker.upgrade_id in state.finished:
            return
        state.latest = marker
        self._maybe_start(state)

    def _maybe_start(self, state: SimDevice) -> None:
        """Play the newest marker once the upgrade in hand (if any) ended."""
        marker = state.latest
        if marker is None or marker.upgrade_id in state.finished:
            return
        if state.task is not None and not state.task.done():
            return  # a newer marker waits for the one in hand (the agent's pending upgrade)
        state.finished.add(marker.upgrade_id)
        task = self._spawn(play_upgrade(state, marker, self, self.config))
        state.task = task
        task.add_done_callback(functools.partial(self._next_marker, state))

    def _next_marker(self, state: SimDevice, _task: asyncio.Task[Any]) -> None:
        self._maybe_start(state)

    # -- commands --------------------------------------------------------------------------
    async def _on_command(self, msg: Any) -> None:
        device = subjects.device_of(msg.subject)
        if device is None or device not in self.devices or not msg.reply:
            return
        if from_jetstream(msg.reply, msg.headers):
            self.stats["commands_redelivered"] += 1
            return
        state = self.devices[device]
        if not state.online(time.time()):
            return
        try:
            command = COMMAND.decode(msg.data)
            args = decode_args(command)
        except InvalidMessage as exc:
            self.stats["commands_invalid"] += 1
            log.warning("command dropped", extra={"device_id": device, "reason": exc.reason})
            return
        if command.verb is Verb.UPGRADE_STOP:
            assert isinstance(args, UpgradeStopArgs)
            code, instance = state.on_stop(args.upgrade_id)
            self.stats[f"stop_{code.value}"] += 1
        else:
            code, instance = ReplyCode.OK, state.instance_id
        reply = Reply(
            command_id=command.command_id,
            ok=code is ReplyCode.OK,
            code=code,
            instance_id=instance,
            agent_version=Version(state.version),
        )
        assert self.nc is not None
        with contextlib.suppress(Exception):
            await self.nc.publish(msg.reply, encode(reply))

    # -- heartbeats ------------------------------------------------------------------------
    async def _heartbeats(self, stop: asyncio.Event) -> None:
        assert self.nc is not None
        interval = self.config.heartbeat_s
        while not stop.is_set():
            now_m, now = time.monotonic(), time.time()
            while self._heap and self._heap[0][0] <= now_m:
                _, device = heapq.heappop(self._heap)
                state = self.devices[device]
                away = state.away_until
                if away is not None and now >= away:
                    self.set_back([device])  # its offline time is over
                elif away is None:
                    for hb in state.heartbeats(now, interval):
                        try:
                            await self.nc.publish(subjects.heartbeat(device), encode(hb))
                            self.stats["heartbeats"] += 1
                        except Exception:
                            self.stats["heartbeats_unsent"] += 1
                jitter = self._rng.uniform(1 - JITTER, 1 + JITTER)
                heapq.heappush(self._heap, (now_m + interval * jitter, device))
            self._wake.clear()
            delay = self._heap[0][0] - time.monotonic() if self._heap else interval
            if delay > 0:
                await wait_event(self._wake, min(delay, interval))

    # -- lifecycle -------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.stats["internal_errors"] += 1
            log.error("simulated device failed", exc_info=task.exception())

    async def run(self, stop: asyncio.Event) -> None:
        """Open, then heartbeat and answer until ``stop``; close."""
        try:
            await self.open()
            await self._heartbeats(stop)
        finally:
            await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def summary(self) -> dict[str, Any]:
        """Counts so far, and the devices by the version they run."""
        versions = Counter(d.version for d in self.devices.values())
        now = time.time()
        return {
            "devices": len(self.devices),
            "online": sum(1 for d in self.devices.values() if d.online(now)),
            "upgrading": sum(1 for d in self.devices.values() if d.task and not d.task.done()),
            "versions": dict(versions),
            "counts": dict(self.stats),
            "uptime_s": round(time.monotonic() - self._started, 1),
        }
