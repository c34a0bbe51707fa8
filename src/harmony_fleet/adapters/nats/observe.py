"""Watching heartbeats from the outside: per-device gaps, for the demo, the e2e tests and bench.

"No lost heartbeats" (ADR-022, invariant 3) is a property of the *device*, not of one process:
during an upgrade the old agent, then the candidate, then the new main beat in turn, and the gap
that matters is between any two consecutive heartbeats of the device, whichever instance sent
them. :class:`HeartbeatGapMonitor` measures exactly that, with its own receive clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.contracts import HEARTBEAT, Heartbeat, subjects
from harmony_fleet.errors import InvalidMessage


@dataclass
class DeviceBeats:
    last_at: float | None = None
    max_gap_s: float = 0.0
    count: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    """instance_id -> version, for every instance seen."""
    last: Heartbeat | None = None


class HeartbeatGapMonitor:
    """Subscribe to every heartbeat and keep, per device, the largest gap since :meth:`reset`."""

    def __init__(self) -> None:
        self.devices: dict[str, DeviceBeats] = {}
        self._sub: Any = None

    async def start(self, nc: NatsClient) -> None:
        self._sub = await nc.subscribe(subjects.ALL_HEARTBEATS, cb=self._on_msg)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Any) -> None:
        try:
            hb = HEARTBEAT.decode(msg.data)
        except InvalidMessage:
            return
        self.observe(hb, time.monotonic())

    def observe(self, hb: Heartbeat, now: float) -> None:
        beats = self.devices.setdefault(hb.device_id, DeviceBeats())
        if beats.last_at is not None:
            beats.max_gap_s = max(beats.max_gap_s, now - beats.last_at)
        beats.last_at = now
        beats.count += 1
        beats.versions[hb.instance_id] = hb.agent_version
        beats.last = hb

    def reset(self, device: str | None = None) -> None:
        """Start a new measurement window (for one device or all); keeps the last receive time."""
        for name, beats in self.devices.items():
            if device is None or name == device:
                beats.max_gap_s = 0.0

    def max_gap(self, device: str, now: float | None = None) -> float:
        """Largest gap so far, counting the silence since the last heartbeat as a gap too."""
        beats = self.devices.get(device)
        if beats is None or beats.last_at is None:
            return float("inf")
        now = time.monotonic() if now is None else now
        return max(beats.max_gap_s, now - beats.last_at)
