"""The upgrade driver: runs the pure machine and performs its effects, one event at a time.

``core.upgrade.machine`` decides; this module only acts, through the device's two seams (its
files and its candidate runner, ``core.upgrade.device``), the status writer, the local state
store and the clock. Events are processed strictly one at a time under a lock, so the machine
never sees two at once; effects of one step run in
order; long work (staging, the self-test, watching the candidate) runs in background tasks that
feed their outcome back as an event.

How the agent process uses it (see ADR-022)::

    driver = UpgradeDriver(device_id=..., instance_id=..., running_version=...,
                           files=AgentFiles(...), runner=ProcessRunner(...),
                           status_sink=..., state_store=..., clock=LoopClock())
    await driver.resume_after_restart()          # once, at start, before anything else
    ... on each marker KV value for this device:  await driver.run_marker(marker)
    ... on each heartbeat of this device:         await driver.record_heartbeat(hb)
    ... on each upgrade_stop command:             reply = await driver.on_stop(uid, command_id)
    await driver.wait_handover()                 # resolves only after a commit: then exit
    await driver.close()
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from harmony_fleet.agent.upgrade import work
from harmony_fleet.agent.upgrade.ports import Cancellable, Clock, StatusSink
from harmony_fleet.agent.upgrade.status_writer import StatusWriter, status_of
from harmony_fleet.contracts.commands import Reply, ReplyCode
from harmony_fleet.contracts.heartbeat import Heartbeat
from harmony_fleet.contracts.ids import DeviceId, InstanceId, UpgradeId, Version
from harmony_fleet.contracts.upgrade import Progress, UpgradeMarker
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.device import CandidateHandle, CandidateRunner, DeviceFiles
from harmony_fleet.core.upgrade.machine import ProtocolViolation, step
from harmony_fleet.core.upgrade.records import (
    LocalState,
    StateStore,
    memory_of,
    remembered,
    with_floor,
    with_installed,
)
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import TimerKind, UpgradeState
from harmony_fleet.logging_setup import FieldsAdapter

log = logging.getLogger(__name__)

#: Minimum time between two progress updates written to the status while staging.
PROGRESS_EVERY_S = 2.0
#: Attempts at a revert before reporting RevertFailed, and the pause between them.
REVERT_ATTEMPTS = 3
REVERT_PAUSE_S = 1.0
#: Versions kept on disk after a successful upgrade (the running and the previous one).
KEEP_VERSIONS = 2
#: States of the last upgrade in which the running main may still be rolled back by its launcher:
#: its version does not raise the floor until it passes the watch (``fx.RaiseFloor``).
WATCHED = frozenset({UpgradeState.COMMITTING, UpgradeState.COMMITTED, UpgradeState.WATCHING})
#: States in which a candidate's heartbeat can change something (not ``CANDIDATE_STATES``:
#: those are the states in which a candidate process may exist).
HEARTBEAT_STATES = frozenset(
    {UpgradeState.STARTING, UpgradeState.CUTOVER_READY, UpgradeState.HOLDING}
)


class UpgradeDriver:
    """One device's agent-side upgrade, driven by markers, heartbeats, stops and timers."""

    def __init__(
        self,
        *,
        device_id: DeviceId,
        instance_id: InstanceId,
        running_version: Version,
        files: DeviceFiles,
        runner: CandidateRunner,
        status_sink: StatusSink,
        state_store: StateStore,
        clock: Clock,
        keep_versions: int = KEEP_VERSIONS,
    ) -> None:
        self.device_id = device_id
        self.instance_id = instance_id
        self.running_version = running_version
        self._files = files
        self._runner = runner
        self.keep_versions = keep_versions
        self._store = state_store
        self._clock = clock
        self._status = StatusWriter(status_sink, clock)
        self._local: LocalState = state_store.load()
        self._snap = Snapshot.initial(
            running_version=running_version,
            instance_id=instance_id,
            memory=memory_of(self._local),
            watched=files.watched,
        )
        self._lock = asyncio.Lock()
        self._work: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[TimerKind, Cancellable] = {}
        self._handover = asyncio.Event()
        self.state_changed = asyncio.Event()  # set on every change of state; waiters clear it
        self._last_progress_at = float("-inf")
        self._closed = False
        self.violations = 0
        self.log = FieldsAdapter(log, {"device_id": device_id, "instance_id": instance_id})

    # -- the public entry points --------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The machine's current snapshot (read-only; for status pages and tests)."""
        return self._snap

    async def resume_after_restart(self) -> None:
        """Finish or revert what a previous process left (call once, first)."""
        try:
            current: Version | None = await self._files.self_heal_layout()
        except Exception as exc:
            self.log.error("layout self-heal failed at start", extra={"error": str(exc)})
            try:
                current = await self._files.current_version()
            except Exception as again:
                self.log.error("current version unreadable", extra={"error": str(again)})
                current = None
        note = await work.rollback_note(self._files)
        sha = await work.own_hash(self._files, self._local, self.running_version)
        if sha is not None:
            self._save(with_installed(self._local, self.running_version, sha))
        record = self._local.in_flight
        if record is None or record.state not in WATCHED:  # it runs as main, past any watch
            floored = with_floor(self._local, self.running_version)
            if floored is not self._local:
                self._save(floored)
        await self._dispatch(
            ev.AgentRestarted(
                record=record,
                current_version=current,
                post_commit=note,
                since_commit_s=await work.since_commit(self._files, record),
            )
        )

    async def run_marker(self, marker: UpgradeMarker) -> None:
        """Feed one delivery of this device's marker (first sight, redelivery, newer one).

        Returns once the machine took it in; the upgrade itself goes on in the background.
        """
        if marker.device_id != self.device_id:
            self.log.warning(
                "marker for another device ignored", extra={"marker_device": marker.device_id}
            )
            return
        await self._dispatch(ev.MarkerSeen(marker=marker, seen_at=self._clock.now()))

    async def record_heartbeat(self, hb: Heartbeat) -> None:
        """Tell the machine about a heartbeat of this device (cheap when no upgrade runs)."""
        if hb.device_id != self.device_id or hb.instance_id == self.instance_id:
            return
        if self._snap.state not in HEARTBEAT_STATES:
            return
        seen = ev.CandidateHeartbeatSeen(
            instance_id=hb.instance_id, version=hb.agent_version, upgrade_id=hb.upgrade_id
        )
        await self._dispatch(seen)

    async def on_stop(self, upgrade_id: UpgradeId, command_id: str) -> Reply | None:
        """Answer ``upgrade_stop``. Commits (swap, status, reply OK) only if armed for it.

        The reply is sent after ``current`` moved and the Committed status was handed to the
        writer; a refusal (NOT_ARMED, WRONG_UPGRADE) changes nothing. It is the answer the
        dispatch of this stop produced (the commit's outcome comes back in the same dispatch:
        the swap runs inside it).
        """
        stop = ev.StopReceived(
            upgrade_id=upgrade_id, command_id=command_id, received_at=self._clock.now()
        )
        replies = await self._dispatch(stop)
        reply = next((r for r in replies if r.command_id == command_id), None)
        if reply is None:  # only if the machine dropped the event: never leave the caller hanging
            return self._reply(command_id, ReplyCode.ERROR, "no decision")
        return reply

    async def wait_handover(self) -> None:
        """Resolves when this (old) agent committed and must exit so the new one takes over."""
        await self._handover.wait()

    @property
    def handed_over(self) -> bool:
        return self._handover.is_set()

    async def flush_status(self) -> None:
        """Wait until the latest status reached the sink (call before exiting on hand-over)."""
        await self._status.flush()

    async def close(self) -> None:
        """Cancel timers and background work; the on-disk state stays as it is."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = [t for t in (self._work, self._watch, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._status.close()

    # -- the loop -----------------------------------------------------------------------------

    async def _dispatch(self, event: ev.Event) -> list[Reply]:
        """Feed ``event`` and what follows from it; the stop replies it produced."""
        replies: list[Reply] = []
        if self._closed:
            return replies
        async with self._lock:
            queue: deque[ev.Event] = deque([event])
            while queue:
                current = queue.popleft()
                try:
                    snap, effects = step(self._snap, current)
                except ProtocolViolation as exc:
                    self.violations += 1
                    self.log.warning("event dropped", extra={"error": str(exc)})
                    continue
                if snap.state is not self._snap.state:
                    self.log.info(
                        "upgrade state",
                        extra={
                            "from": self._snap.state.value,
                            "to": snap.state.value,
                            "event": type(current).__name__,
                            "upgrade_id": snap.upgrade_id,
                        },
                    )
                    self.state_changed.set()
                self._snap = snap
                for effect in effects:
                    if isinstance(effect, fx.ReplyToStop):
                        replies.append(self._reply(effect.command_id, effect.code, effect.message))
                        continue
                    follow = await self._perform(effect)
                    if follow is not None:
                        queue.append(follow)
        return replies

    async def _feed(self, event: ev.Event) -> None:
        """Dispatch from a background task (a timer, finished work): nobody awaits a reply."""
        await self._dispatch(event)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _perform(self, effect: fx.Effect) -> ev.Event | None:
        local = remembered(self._local, effect)
        if local is not None:  # an effect on the state file only
            self._save(local)
            return None
        match effect:
            case fx.Stage(marker=marker):
                self._work = self._spawn(self._run_stage(marker))
            case fx.RunSelfTest(marker=marker, timeout_s=timeout_s):
                self._work = self._spawn(self._run_self_test(marker, timeout_s))
            case fx.CancelWork():
                if self._work is not None and self._work is not asyncio.current_task():
                    self._work.cancel()
                self._work = None
            case fx.StartCandidate(marker=marker):
                return await self._start_candidate(marker)
            case fx.StopCandidate(upgrade_id=uid):
                self._stop_watching()
                try:
                    await self._runner.stop_candidate(uid)
                except Exception as exc:
                    self.log.error("stopping the candidate failed", extra={"error": str(exc)})
            case fx.SwapCurrent():
                return await work.arm_and_swap(self._files, effect)
            case fx.Revert():
                return await self._revert(effect)
            case fx.CleanupStaging(version=version):
                try:
                    await self._files.cleanup_staging(version)
                except Exception as exc:
                    self.log.error("staging cleanup failed", extra={"error": str(exc)})
            case fx.WriteStatus():
                now, device, instance = self._clock.now(), self.device_id, self.instance_id
                self._status.publish(
                    status_of(effect, device=device, instance=instance, now=now, local=self._local)
                )
            case fx.EndWatch(upgrade_id=uid):
                await work.end_watch(self._files, uid)
            case fx.CollectGarbage(protect=protect):
                protect = protect | ({self._local.previous} if self._local.previous else set())
                self._save(
                    await work.collect(self._files, self._local, protect, self.keep_versions)
                )
            case fx.HandOver(upgrade_id=uid):
                self.log.info("handing over to the new version", extra={"upgrade_id": uid})
                self._handover.set()
            case fx.Resubmit(event=event):
                return event
            case fx.ScheduleTimer(kind=kind, delay_s=delay_s, upgrade_id=uid):
                self._cancel_timer(kind)
                fire = ev.timer_event(kind, uid)
                self._timers[kind] = self._clock.call_later(
                    delay_s, lambda: self._timer_fired(kind, fire)
                )
            case fx.CancelTimer(kind=kind):
                self._cancel_timer(kind)
        return None

    # -- effects that need more than a line -----------------------------------------------------

    def _save(self, state: LocalState) -> None:
        self._local = state
        try:
            self._store.save(state)
        except Exception as exc:
            self.log.error("local state not saved", extra={"error": str(exc)})

    def _cancel_timer(self, kind: TimerKind) -> None:
        timer = self._timers.pop(kind, None)
        if timer is not None:
            timer.cancel()

    def _timer_fired(self, kind: TimerKind, event: ev.Event) -> None:
        self._timers.pop(kind, None)
        if not self._closed:
            self._spawn(self._feed(event))

    def _reply(self, command_id: str, code: ReplyCode, message: str) -> Reply:
        return Reply(
            command_id=command_id,
            ok=code is ReplyCode.OK,
            code=code,
            message=message,
            instance_id=self.instance_id,
            agent_version=self.running_version,
        )

    async def _run_stage(self, marker: UpgradeMarker) -> None:
        uid = marker.upgrade_id
        refused = await work.below_floor(self._files, marker, self._local.version_floor)
        if refused is not None:  # a downgrade: refused before anything is fetched
            await self._dispatch(refused)
            return
        await self._dispatch(
            await work.stage(self._files, marker, lambda p: self._on_progress(uid, p))
        )

    def _on_progress(self, uid: UpgradeId, progress: Progress) -> None:
        now = self._clock.now()
        if 0 <= now - self._last_progress_at < PROGRESS_EVERY_S:
            return  # (a wall clock stepped back counts as time passed, not as none)
        self._last_progress_at = now
        self._spawn(self._feed(ev.StagingProgress(upgrade_id=uid, progress=progress)))

    async def _run_self_test(self, marker: UpgradeMarker, timeout_s: float) -> None:
        failures = self._status.failures
        event = await work.self_test(self._runner, self._files, marker, timeout_s)
        if isinstance(event, ev.SelfTestFailed | ev.SelfTestTimedOut):
            # A fact for the machine: was NATS away while the self-test ran (it checks NATS)?
            lost = self._status.failures > failures or not self._status.reachable
            event = replace(event, control_plane_lost=lost)
        await self._dispatch(event)

    async def _start_candidate(self, marker: UpgradeMarker) -> ev.Event:
        event, handle = await work.start_candidate(self._runner, marker)
        if handle is not None:
            self._stop_watching()
            self._watch = self._spawn(self._watch_candidate(handle))
        return event

    async def _watch_candidate(self, handle: CandidateHandle) -> None:
        event = await work.candidate_exit(self._runner, handle)
        self._watch = None
        await self._dispatch(event)

    def _stop_watching(self) -> None:
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self._watch = None

    async def _revert(self, effect: fx.Revert) -> ev.Event:
        self._stop_watching()
        return await work.revert(
            self._runner, self._files, effect, self._clock, REVERT_ATTEMPTS, REVERT_PAUSE_S
        )
