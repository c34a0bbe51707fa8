"""Presence and write coalescing for the device registry: pure rules, no I/O.

The operator sees every heartbeat but must not write the registry once per heartbeat: at 20,000
devices and a 5 s interval that would be 4,000 KV writes a second for nothing. These functions
decide, from the in-memory view of one device, whether its record needs writing now:

* at once, when something a person would notice changed: version, role set, a new instance,
  online/offline, labels, the upgrade summary;
* otherwise on a slow refresh (``refresh_s``), so that ``last_seen`` in the registry is never
  older than that;
* offline after ``missed`` intervals without a heartbeat (the interval is the device's own, as
  carried in its heartbeat).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Instances remembered per device (most recent first): enough to show an upgrade's handover.
MAX_INSTANCES = 4

#: The heartbeat intervals the operator believes. A heartbeat's ``interval_s`` is the device's
#: word: one forged (or buggy) beat saying ``1e12`` would keep a dead device "online" for ever,
#: one saying ``0`` would flap it offline. Outside these bounds it is clamped.
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 600.0


def clamp_interval(interval_s: float) -> float:
    """``interval_s`` within [:data:`MIN_INTERVAL_S`, :data:`MAX_INTERVAL_S`]."""
    return min(max(interval_s, MIN_INTERVAL_S), MAX_INTERVAL_S)


@dataclass(frozen=True, kw_only=True)
class PresencePolicy:
    """When a device counts as offline and how often an unchanged record is refreshed."""

    missed: int = 3
    """Heartbeat intervals without a heartbeat before a device is shown offline."""
    grace_s: float = 2.0
    """Added to the offline deadline for jitter and transport delay."""
    refresh_s: float = 60.0
    """Longest time an unchanged record goes without a write (bounds ``last_seen`` staleness)."""

    def offline_after(self, interval_s: float) -> float:
        return self.missed * interval_s + self.grace_s


def is_online(*, last_seen: float, interval_s: float, now: float, policy: PresencePolicy) -> bool:
    """A device is online while its newest heartbeat is younger than the offline deadline."""
    return now - last_seen <= policy.offline_after(interval_s)


def needs_write(*, dirty: bool, last_written: float, now: float, policy: PresencePolicy) -> bool:
    """Write when something visible changed, or when the refresh interval has passed."""
    return dirty or now - last_written >= policy.refresh_s
