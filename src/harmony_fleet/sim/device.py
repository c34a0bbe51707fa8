"""One simulated device: its state, its heartbeats, and how it plays an upgrade.

A device is a small object, not a set of tasks: the worker's one scheduler sends its heartbeats
(:meth:`SimDevice.heartbeats`), and only an upgrade in flight has a task of its own
(:func:`play_upgrade`). The upgrade follows the agent's protocol (ADR-022) on the wire, with the
real contracts: statuses Staging, Verifying, CutoverReady; the candidate heartbeats (role
candidate, a new instance, the upgrade id) until the operator's ``upgrade_stop`` comes (only the
old main answers it: :meth:`SimDevice.on_stop`); Committed with the watch window; then Succeeded,
or RolledBack ``post_commit`` for a device that crashes after its commit. A marker of source
``installed`` (``fleet rollback``, a rollout's undo) downloads nothing and must name the hash
this device recorded for the kept version. What the device does wrong comes from its
:class:`~harmony_fleet.sim.config.Profile`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

from harmony_fleet._tasks import wait_event
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    Heartbeat,
    Role,
    UpgradeMarker,
    UpgradeStatus,
)
from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import (
    DeviceId,
    InstanceId,
    UpgradeId,
    Version,
    new_instance_id,
)
from harmony_fleet.contracts.upgrade import ArtifactSource, ErrorCode, Progress
from harmony_fleet.sim.config import Fault, Profile, SimConfig

log = logging.getLogger(__name__)

#: The size every simulated artifact claims (for download progress).
ARTIFACT_BYTES = 20 * 1024 * 1024
#: Share of the upgrade time spent downloading (the rest is the self-test).
DOWNLOAD_SHARE = 0.8


def fake_sha256(version: str) -> str:
    """The hash a simulated device records for a version it runs from the start."""
    return hashlib.sha256(f"harmony-fleet-sim/{version}".encode()).hexdigest()


class Wire(Protocol):
    """What a device's upgrade needs from its worker (NATS, the clock)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def write_status(self, status: UpgradeStatus) -> None: ...

    def heartbeat_now(self, device: SimDevice) -> None: ...

    def count(self, what: str) -> None: ...


@dataclass
class Candidate:
    instance_id: InstanceId
    version: str
    upgrade_id: str


@dataclass
class SimDevice:
    profile: Profile
    version: str
    instance_id: InstanceId
    started_at: float
    seq: int = 0
    away_until: float | None = None
    """Offline until then (``math.inf``: for good); None: online."""
    candidate: Candidate | None = None
    armed: tuple[str, asyncio.Event] | None = None
    """The upgrade id the old main waits for the stop of, and the event the stop sets."""
    kept: dict[str, str] = field(default_factory=dict)
    """Versions on disk and the hash recorded for each."""
    previous: str | None = None
    finished: set[str] = field(default_factory=set)
    """Upgrade ids played (never played again: the agent's local state)."""
    committed: str | None = None
    """The upgrade id this device committed last (a stop sent again is answered ok)."""
    marker_revision: int | None = None
    latest: UpgradeMarker | None = None
    task: asyncio.Task[None] | None = None

    @classmethod
    def new(cls, profile: Profile, config: SimConfig, now: float) -> SimDevice:
        device = cls(profile, config.version, new_instance_id(), now)
        device.kept[config.version] = fake_sha256(config.version)
        return device

    @property
    def device_id(self) -> str:
        return self.profile.device_id

    def online(self, now: float) -> bool:
        return self.away_until is None or now >= self.away_until

    def heartbeats(self, now: float, interval_s: float) -> list[Heartbeat]:
        """What this device sends at this tick: its main, and its candidate while one runs."""
        self.seq += 1
        out = [
            Heartbeat(
                device_id=DeviceId(self.device_id),
                instance_id=self.instance_id,
                agent_version=Version(self.version),
                role=Role.MAIN,
                seq=self.seq,
                sent_at=now,
                uptime_s=max(0.0, now - self.started_at),
                interval_s=interval_s,
                labels=self.profile.labels,
            )
        ]
        cand = self.candidate
        if cand is not None:
            out.append(
                Heartbeat(
                    device_id=DeviceId(self.device_id),
                    instance_id=cand.instance_id,
                    agent_version=Version(cand.version),
                    role=Role.CANDIDATE,
                    seq=self.seq,
                    sent_at=now,
                    uptime_s=0.0,
                    interval_s=interval_s,
                    upgrade_id=UpgradeId(cand.upgrade_id),
                    labels=self.profile.labels,
                )
            )
        return out

    def on_stop(self, upgrade_id: str) -> tuple[ReplyCode, InstanceId]:
        """The old main's answer to ``upgrade_stop`` (the instance that answers with it)."""
        if upgrade_id == self.committed:
            return ReplyCode.OK, self.instance_id  # a stop sent again after the commit
        if self.armed is None or self.candidate is None:
            return ReplyCode.NOT_ARMED, self.instance_id
        armed_for, event = self.armed
        if armed_for != upgrade_id:
            return ReplyCode.WRONG_UPGRADE, self.instance_id
        event.set()
        return ReplyCode.OK, self.instance_id


async def play_upgrade(
    device: SimDevice, marker: UpgradeMarker, wire: Wire, config: SimConfig
) -> None:
    """Play one marker to its end, writing each status as the agent would."""
    started = wire.now()
    from_version = device.version
    faults = device.profile.faults

    def status(phase: AgentUpgradePhase, **fields: object) -> UpgradeStatus:
        base: dict[str, object] = {
            "upgrade_id": marker.upgrade_id,
            "device_id": DeviceId(device.device_id),
            "phase": phase,
            "from_version": Version(from_version),
            "to_version": marker.target_version,
            "instance_id": device.instance_id,
            "started_at": started,
            "updated_at": wire.now(),
        }
        if device.previous is not None:
            base["previous_version"] = Version(device.previous)
            base["previous_sha256"] = device.kept.get(device.previous)
        base.update(fields)
        return UpgradeStatus(**base)  # type: ignore[arg-type]

    async def end(phase: AgentUpgradePhase, code: ErrorCode | None = None, **kw: object) -> None:
        await wire.write_status(
            status(phase, error_code=code.value if code else "", error_detail="simulated", **kw)
        )
        wire.count(f"{phase.value}{'/' + code.value if code else ''}")

    target = marker.target_version
    if target == device.version:
        await end(AgentUpgradePhase.FAILED, ErrorCode.ALREADY_RUNNING)
        return
    installed = marker.source is ArtifactSource.INSTALLED
    if installed and device.kept.get(target) != marker.sha256:
        await end(AgentUpgradePhase.FAILED, ErrorCode.NOT_INSTALLED)
        return
    wire.count("started")
    await wire.write_status(status(AgentUpgradePhase.STAGING))
    took = device.profile.upgrade_time_s
    download = 0.0 if installed else took * DOWNLOAD_SHARE
    if Fault.SLOW_DOWNLOAD in faults and not installed:
        download *= config.slow_factor
        steps = max(1, min(20, int(download // 2)))
        for step in range(1, steps + 1):
            await wire.sleep(download / steps)
            done = ARTIFACT_BYTES * step // steps
            progress = Progress(
                bytes_done=done, bytes_total=ARTIFACT_BYTES, rate_bps=ARTIFACT_BYTES / download
            )
            await wire.write_status(status(AgentUpgradePhase.STAGING, progress=progress))
    else:
        await wire.sleep(download)
    await wire.write_status(status(AgentUpgradePhase.VERIFYING))
    await wire.sleep(took - took * DOWNLOAD_SHARE)
    if Fault.SELF_TEST in faults and not installed:
        await end(AgentUpgradePhase.FAILED, ErrorCode.SELF_TEST_FAILED)
        return
    candidate = Candidate(new_instance_id(), target, marker.upgrade_id)
    await wire.write_status(
        status(AgentUpgradePhase.CUTOVER_READY, candidate_instance_id=candidate.instance_id)
    )
    stop = asyncio.Event()
    device.armed = (marker.upgrade_id, stop)
    bound = marker.timeouts.cutover_s if Fault.SILENT in faults else marker.timeouts.hold_s
    if config.cutover_s is not None:
        bound = min(bound, config.cutover_s)
    if Fault.SILENT not in faults:
        device.candidate = candidate
        wire.heartbeat_now(device)
    if not await wait_event(stop, bound):
        device.armed, device.candidate = None, None
        code = ErrorCode.CUTOVER_TIMEOUT if Fault.SILENT in faults else ErrorCode.HOLD_TIMEOUT
        await end(AgentUpgradePhase.ROLLED_BACK, code)
        return
    # The stop came: the candidate is the device's main now, the old version stays on disk.
    device.armed, device.candidate = None, None
    device.previous, device.version = from_version, target
    device.instance_id = candidate.instance_id
    device.kept[target] = marker.sha256
    device.committed = marker.upgrade_id
    watch = marker.timeouts.watch_s
    if config.watch_s is not None:
        watch = min(watch, config.watch_s)
    wire.heartbeat_now(device)
    await wire.write_status(status(AgentUpgradePhase.COMMITTED, watch_until=wire.now() + watch))
    if Fault.CRASH_AFTER_COMMIT in faults and not installed:
        await wire.sleep(watch / 2)
        device.version, device.previous = from_version, target
        device.instance_id = new_instance_id()
        wire.heartbeat_now(device)
        await end(AgentUpgradePhase.ROLLED_BACK, ErrorCode.POST_COMMIT)
        return
    await wire.sleep(watch)
    await end(AgentUpgradePhase.SUCCEEDED)


def forever(value: float | None) -> float:
    """``offline_for_s`` as a time span (None: for good)."""
    return math.inf if value is None else value
