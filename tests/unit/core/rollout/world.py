"""A model fleet for the rollout engine: devices that obey markers one phase per tick.

:class:`World` plays the operator's part (writes the plan's records, then its markers, keeps the
status) and the devices' part: a device with a marker goes Requested -> Staging -> Committed ->
Succeeded, one phase per tick, or ends as its ``behaviour`` says (``fail`` at Staging,
``rollback`` after Committed, ``lost``: silent after its commit). Time is a number the test moves
(:meth:`World.tick`); nothing sleeps. Every plan is kept in :attr:`World.plans`, so tests and
properties can look at what was started when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec

from harmony_fleet.contracts.ids import DeviceId, UpgradeId
from harmony_fleet.contracts.rollout import DeviceProgress, Rollout, RolloutStatus
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as A
from harmony_fleet.core.rollout import DeviceView, Plan, UpgradeView, plan

T0 = 1_790_000_000.0  # tests with windows pick their own times
OLD = "1.0.0"
NEW = "2.0.0"
SHA_OLD = "aa" * 32


@dataclass
class SimDevice:
    device_id: str
    version: str = OLD
    online: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    behaviour: str = "ok"
    failed_versions: frozenset[str] = frozenset()
    marker: UpgradeId | None = None
    target: str = ""
    status: UpgradeView | None = None
    previous: str | None = None
    markers_seen: list[tuple[UpgradeId, str]] = field(default_factory=list)

    def view(self) -> DeviceView:
        return DeviceView(
            device_id=DeviceId(self.device_id),
            online=self.online,
            agent_version=self.version,
            labels=dict(self.labels),
            failed_versions=self.failed_versions,
            upgrade=self.status,
            marker_upgrade_id=self.marker,
        )

    def advance(self) -> None:
        """One phase of the upgrade in hand (only while online)."""
        if self.marker is None or not self.online:
            return
        status = self.status
        if status is not None and status.upgrade_id == self.marker and status.phase.terminal:
            return
        undo = self.target != NEW
        if status is None or status.upgrade_id != self.marker:
            self._set(A.STAGING)
        elif status.phase is A.STAGING:
            if self.behaviour == "fail" and not undo:
                self._set(A.FAILED, "self_test_failed")
            else:
                self.previous, self.version = self.version, self.target
                self._set(A.COMMITTED)
        elif status.phase is A.COMMITTED:
            if self.behaviour == "rollback" and not undo:
                self.version = self.previous or OLD
                self._set(A.ROLLED_BACK, "post_commit")
            elif self.behaviour == "lost" and not undo:
                self.online = False
            else:
                self._set(A.SUCCEEDED)

    def _set(self, phase: A, error: str = "") -> None:
        assert self.marker is not None
        self.status = UpgradeView(
            upgrade_id=self.marker,
            phase=phase,
            error_code=error,
            previous_version=self.previous,
            previous_sha256=SHA_OLD if self.previous else None,
        )


class World:
    """The operator and the devices around the pure engine."""

    def __init__(
        self,
        rollout: Rollout,
        devices: list[SimDevice],
        *,
        now: float = T0,
        artifact_size: int | None = None,
        skip: tuple[str, ...] = (),
    ) -> None:
        self.rollout = rollout
        self.skip = skip
        self.devices = {d.device_id: d for d in devices}
        self.now = now
        self.artifact_size = artifact_size
        self.status = RolloutStatus(name=rollout.name)
        self.progress: dict[DeviceId, DeviceProgress] = {}
        self.plans: list[Plan] = []

    def set(self, **levers: object) -> None:
        self.rollout = msgspec.structs.replace(self.rollout, **levers)

    def plan(self) -> Plan:
        """One plan, performed: records, then markers, then the status."""
        result = plan(
            self.rollout,
            self.status,
            [d.view() for d in self.devices.values()],
            self.progress,
            now=self.now,
            artifact_size=self.artifact_size,
            skip=self.skip,
        )
        for record in result.writes:
            self.progress[record.device_id] = record
        for start in result.starts:
            device = self.devices[start.device_id]
            device.marker = start.upgrade_id
            device.target = start.target_version
            device.markers_seen.append((start.upgrade_id, start.target_version))
        self.status = result.status
        self.plans.append(result)
        return result

    def tick(self, dt: float = 1.0) -> Plan:
        """Plan, then every device moves one phase, then time moves by ``dt``."""
        result = self.plan()
        for device in self.devices.values():
            device.advance()
        self.now += dt
        return result

    def run(self, ticks: int = 200, dt: float = 1.0) -> Plan:
        """Tick until the rollout is finished (or ``ticks`` ran out); the last plan."""
        result = self.tick(dt)
        for _ in range(ticks):
            if result.finished:
                break
            result = self.tick(dt)
        return result

    def started(self) -> set[str]:
        """Devices that were ever sent a marker for the new version."""
        return {
            d.device_id for d in self.devices.values() if any(t == NEW for _, t in d.markers_seen)
        }

    def states(self) -> Mapping[DeviceId, tuple[object, str]]:
        return self.plans[-1].states


def fleet(n: int, **kw: object) -> list[SimDevice]:
    return [SimDevice(device_id=f"d{i:03d}", **kw) for i in range(n)]  # type: ignore[arg-type]


def rollout(**kw: object) -> Rollout:
    fields: dict[str, object] = {
        "name": "r1",
        "version": NEW,
        "created_at": T0,
        "soak_s": 0.0,
        "spread_s": 0.0,
    }
    fields.update(kw)
    return msgspec.convert(fields, Rollout, from_attributes=True)
