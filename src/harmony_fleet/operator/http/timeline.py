"""What happened, in the order the operator saw it: upgrade timelines and fleet events.

The operator keeps no history of an upgrade's phases (the status bucket holds the latest only),
so the dashboard keeps its own, in memory, from two sources that cost the heartbeat path
nothing:

* every change of a device's upgrade summary (``Registry.add_upgrade_listener``: the
  coordinator reflecting a phase), timed with the operator's clock: an
  :class:`UpgradeTrack` per upgrade (the last few per device), whose steps give the phase
  durations the device page draws, and a fleet event per phase change;
* a diff of the registry once a tick (:meth:`Timeline.scan`): devices coming online, going
  offline, changing version, and security events (dropped forged or unissued messages).

Bounded: :data:`UPGRADES_PER_DEVICE` tracks per device, :data:`MAX_EVENTS` events. A restart
of the operator starts both empty (an upgrade in flight then starts at the phase it is in).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harmony_fleet.contracts import AgentUpgradePhase, UpgradeSummary
from harmony_fleet.operator.registry import DeviceState

log = logging.getLogger(__name__)

UPGRADES_PER_DEVICE = 5
MAX_EVENTS = 500
#: Changes of one kind in one scan above which one summary event is added instead.
MAX_PER_SCAN = 20
_KINDS = {
    "new": "device",
    "left": "device",
    "online": "presence",
    "offline": "presence",
    "version": "version",
}
_SUMMARY = {
    "new": "new",
    "left": "left the registry",
    "online": "online",
    "offline": "offline",
    "version": "on a new version",
}

Phase = AgentUpgradePhase
_TERMINAL = frozenset(p.value for p in Phase if p.terminal)


@dataclass(frozen=True)
class Step:
    """One phase of one upgrade, from when the operator saw it."""

    phase: str
    at: float
    message: str = ""
    error_code: str = ""
    error_detail: str = ""


@dataclass
class UpgradeTrack:
    device_id: str
    upgrade_id: str
    target_version: str
    steps: list[Step] = field(default_factory=list)

    @property
    def phase(self) -> str:
        return self.steps[-1].phase if self.steps else ""

    def seconds_to(self, phase: str) -> float | None:
        """From the first step this operator saw (Requested, normally) to ``phase``."""
        if not self.steps:
            return None
        for step in self.steps:
            if step.phase == phase:
                return step.at - self.steps[0].at
        return None

    def to_json(self, now: float) -> dict[str, object]:
        steps = []
        for i, step in enumerate(self.steps):
            end = self.steps[i + 1].at if i + 1 < len(self.steps) else None
            terminal = step.phase in _TERMINAL
            steps.append(
                {
                    "phase": step.phase,
                    "at": step.at,
                    "duration_s": round((end if end is not None else now) - step.at, 3)
                    if not terminal
                    else None,
                    "message": step.message,
                    "error_code": step.error_code,
                    "error_detail": step.error_detail,
                }
            )
        return {
            "device_id": self.device_id,
            "upgrade_id": self.upgrade_id,
            "target_version": self.target_version,
            "phase": self.phase,
            "steps": steps,
        }


@dataclass(frozen=True)
class Event:
    seq: int
    at: float
    kind: str
    device_id: str
    text: str

    def to_json(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "device_id": self.device_id,
            "text": self.text,
        }


#: Called for every new step of an upgrade (the metrics' histograms and outcome counters).
StepObserver = Callable[[UpgradeTrack, Step], None]
#: Called for every new fleet event (the event stream).
EventObserver = Callable[[Event], None]


class Timeline:
    """See the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.upgrades: dict[str, deque[UpgradeTrack]] = {}
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.step_observers: list[StepObserver] = []
        self.event_observers: list[EventObserver] = []
        self._seq = itertools.count(1)
        self._seen: dict[str, tuple[bool, str]] = {}
        self._security: Counter[str] = Counter()
        self._scanned = False

    # -- upgrades -----------------------------------------------------------------------------
    def on_upgrade(self, device: str, summary: UpgradeSummary | None) -> None:
        """Registry listener: a device's upgrade summary changed."""
        if summary is None:
            return
        now = self.clock()
        tracks = self.upgrades.setdefault(device, deque(maxlen=UPGRADES_PER_DEVICE))
        track = tracks[-1] if tracks and tracks[-1].upgrade_id == summary.upgrade_id else None
        if track is None:
            track = UpgradeTrack(device, summary.upgrade_id, summary.target_version)
            tracks.append(track)
        if track.phase == summary.phase.value:
            return  # progress or message only: not a new step
        step = Step(
            summary.phase.value,
            now,
            message=summary.message,
            error_code=summary.error_code,
            error_detail=summary.error_detail,
        )
        track.steps.append(step)
        for observe in self.step_observers:
            observe(track, step)
        text = f"upgrade to {summary.target_version}: {summary.phase.value}"
        reason = summary.error_code or summary.message
        if summary.phase in (Phase.ROLLED_BACK, Phase.FAILED) and reason:
            text += f" ({reason})"
        self.add("upgrade", device, text, now)

    def latest(self, device: str) -> UpgradeTrack | None:
        tracks = self.upgrades.get(device)
        return tracks[-1] if tracks else None

    def forget(self, present: Iterable[str]) -> None:
        """Drop the tracks of devices that left the registry (revoked)."""
        keep = set(present)
        for device in [d for d in self.upgrades if d not in keep]:
            del self.upgrades[device]

    # -- fleet events -------------------------------------------------------------------------
    def add(self, kind: str, device: str, text: str, now: float | None = None) -> Event:
        event = Event(next(self._seq), self.clock() if now is None else now, kind, device, text)
        self.events.append(event)
        for observe in self.event_observers:
            observe(event)
        return event

    def scan(self, devices: dict[str, DeviceState], security: Counter[str]) -> None:
        """Compare the registry with the last scan; add an event per change seen.

        The first scan only takes note (a fresh operator does not announce the whole fleet).
        """
        first, self._scanned = not self._scanned, True
        seen = self._seen
        found: dict[str, list[tuple[str, str]]] = {}
        for device_id, state in devices.items():
            now_seen = (state.online, state.current_version)
            before = seen.get(device_id)
            if before == now_seen:
                continue
            seen[device_id] = now_seen
            if first:
                continue
            if before is None:
                text = f"new device, running {state.current_version}"
                found.setdefault("new", []).append((device_id, text))
                continue
            if before[0] != state.online:
                presence = "online" if state.online else "offline"
                found.setdefault(presence, []).append((device_id, presence))
            if before[1] != state.current_version:
                text = f"now runs {state.current_version} (was {before[1]})"
                found.setdefault("version", []).append((device_id, text))
        if len(seen) > len(devices):
            for device_id in [d for d in seen if d not in devices]:
                del seen[device_id]
                text = "left the registry (identity revoked)"
                found.setdefault("left", []).append((device_id, text))
            self.forget(devices)
        for what, changes in found.items():
            kind = _KINDS[what]
            if len(changes) > MAX_PER_SCAN:  # a fleet coming online at once: one line, not 10k
                self.add(kind, "", f"{len(changes)} devices: {_SUMMARY[what]}")
                continue
            for device_id, text in changes:
                self.add(kind, device_id, text)
        for kind, count in security.items():
            new = count - self._security[kind]
            if new > 0 and not first:
                self.add("security", "", f"{new} message(s) dropped: {kind}")
            self._security[kind] = count
