"""The JSON the API answers and the page draws, built from the operator's memory (no I/O).

Everything here reads the registry, the coordinator and the dashboard's timeline as they are
at the call: a request costs one pass over the devices it shows, and nothing is computed on the
heartbeat path.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.http.timeline import Timeline
from harmony_fleet.operator.registry import DeviceState, Registry

log = logging.getLogger(__name__)

#: Most devices one list answer holds (the page pages through the rest with ``offset``).
MAX_LIST = 1000

Json = dict[str, Any]


def device_summary(state: DeviceState) -> Json:
    up = state.upgrade
    return {
        "device_id": state.device_id,
        "version": state.current_version,
        "online": state.online,
        "last_seen": state.last_seen,
        "labels": state.labels,
        "upgrade": None
        if up is None
        else {
            "upgrade_id": up.upgrade_id,
            "phase": up.phase.value,
            "target_version": up.target_version,
            "message": up.message,
            "error_code": up.error_code,
            "updated_at": up.updated_at,
        },
    }


def device_detail(state: DeviceState, timeline: Timeline, now: float) -> Json:
    out = device_summary(state)
    up = state.upgrade
    if out["upgrade"] is not None and up is not None:
        out["upgrade"]["error_detail"] = up.error_detail
        out["upgrade"]["watch_until"] = up.watch_until
        if up.progress is not None:
            out["upgrade"]["progress"] = {
                "bytes_done": up.progress.bytes_done,
                "bytes_total": up.progress.bytes_total,
            }
    out["first_seen"] = state.first_seen
    out["interval_s"] = state.interval_s
    out["instances"] = [
        {
            "instance_id": i.instance_id,
            "agent_version": i.agent_version,
            "role": i.role.value,
            "first_seen": i.first_seen,
            "last_seen": i.last_seen,
        }
        for i in sorted(state.instances.values(), key=lambda i: i.last_seen, reverse=True)
    ]
    tracks = timeline.upgrades.get(state.device_id, ())
    out["upgrades"] = [t.to_json(now) for t in reversed(tracks)]
    return out


def matches(state: DeviceState, query: str, online: bool | None, version: str) -> bool:
    """The device table's filters: text (id, version, a label's key or value), state, version."""
    if online is not None and state.online != online:
        return False
    if version and state.current_version != version:
        return False
    if not query:
        return True
    if query in state.device_id or query in state.current_version:
        return True
    return any(query in k or query in v for k, v in state.labels.items())


def device_list(
    registry: Registry,
    *,
    query: str = "",
    state: str = "",
    version: str = "",
    offset: int = 0,
    limit: int = MAX_LIST,
) -> Json:
    online = {"online": True, "offline": False}.get(state)
    wanted = [
        s
        for s in registry.devices.values()
        if matches(s, query.strip().lower(), online, version.strip())
    ]
    wanted.sort(key=lambda s: s.device_id)
    limit = max(0, min(limit, MAX_LIST))
    return {
        "total": len(wanted),
        "offset": offset,
        "devices": [device_summary(s) for s in wanted[offset : offset + limit]],
    }


def overview(registry: Registry, coordinator: Coordinator, *, connected: bool) -> Json:
    """The fleet at a glance: counts by state, by version, upgrades by phase, security."""
    online = 0
    versions: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    for s in registry.devices.values():
        online += s.online
        versions[s.current_version] += 1
        if s.upgrade is not None:
            phases[s.upgrade.phase.value] += 1
    security = dict(registry.security.counts)
    if coordinator.key_mismatches:
        security["key_mismatch"] = coordinator.key_mismatches
    return {
        "devices": len(registry.devices),
        "online": online,
        "offline": len(registry.devices) - online,
        "versions": dict(sorted(versions.items())),
        "upgrade_phases": dict(sorted(phases.items())),
        "heartbeats": registry.ingested,
        "rejected": registry.rejected,
        "security": security,
        "nats_connected": connected,
    }


def upgrades(registry: Registry, coordinator: Coordinator, timeline: Timeline, now: float) -> Json:
    """Every device's latest upgrade the registry shows (in flight first, then newest)."""
    rows: list[tuple[bool, float, Json]] = []
    for s in registry.devices.values():
        up = s.upgrade
        if up is None:
            continue
        track = timeline.latest(s.device_id)
        tracked = coordinator.tracked.get(s.device_id)
        row: Json = {
            "device_id": s.device_id,
            "upgrade_id": up.upgrade_id,
            "phase": up.phase.value,
            "terminal": up.phase.terminal,
            "target_version": up.target_version,
            "error_code": up.error_code,
            "message": up.message,
            "updated_at": up.updated_at,
            "requested_by": tracked.view.marker.requested_by
            if tracked is not None and tracked.view.marker.upgrade_id == up.upgrade_id
            else "",
            "steps": track.to_json(now)["steps"]
            if track is not None and track.upgrade_id == up.upgrade_id
            else [],
        }
        rows.append((up.phase.terminal, -up.updated_at, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return {"upgrades": [r[2] for r in rows[:MAX_LIST]], "total": len(rows)}
