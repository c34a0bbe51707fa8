"""Subject names, KV bucket names and key schemes: the one place they are spelled.

All traffic of one device lives under ``fleet.<device_id>.>`` so that a single permission rule
can scope a device's credentials to its own subjects.
"""

from __future__ import annotations

from harmony_fleet.contracts.ids import DeviceId

PREFIX = "fleet"

#: Every heartbeat of every device (what the operator subscribes to).
ALL_HEARTBEATS = f"{PREFIX}.*.heartbeat"

#: KV buckets (defined once, with their limits, in ``adapters.nats.fleet_kv``; created only by
#: the operator or the server bootstrap). Writers: the registry by the operator, the status by
#: the device's agent, the marker by ``write_marker`` (compare-and-set) for every requester:
#: ``fleet upgrade``, ``fleet rollback``, the Kubernetes mode, the local fleet.
BUCKET_DEVICES = "fleet_devices"
BUCKET_UPGRADE_MARKER = "fleet_upgrade_marker"
BUCKET_UPGRADE_STATUS = "fleet_upgrade_status"
ALL_BUCKETS = (BUCKET_DEVICES, BUCKET_UPGRADE_MARKER, BUCKET_UPGRADE_STATUS)


def heartbeat(device: DeviceId | str) -> str:
    """Subject an agent publishes its heartbeats on."""
    return f"{PREFIX}.{device}.heartbeat"


def command(device: DeviceId | str) -> str:
    """Request/reply subject for commands to one device (both agents subscribe)."""
    return f"{PREFIX}.{device}.cmd"


def device_scope(device: DeviceId | str) -> str:
    """Wildcard covering everything of one device: the unit of per-device permissions."""
    return f"{PREFIX}.{device}.>"


def device_of(subject: str) -> str | None:
    """The device token of a ``fleet.<device>.…`` subject, or None if it is not one."""
    parts = subject.split(".", 2)
    if len(parts) < 3 or parts[0] != PREFIX:
        return None
    return parts[1]


def kv_key(device: DeviceId | str) -> str:
    """Key of a device in every bucket: the device id itself (a DNS label is a valid key)."""
    return str(device)


def inbox_prefix(device: DeviceId | str) -> str:
    """The reply-subject prefix of a device's connections (nats-py ``inbox_prefix``).

    A device's credentials let it subscribe only below its own prefix, so no device sees the
    replies meant for another (a shared ``_INBOX.>`` would show it everyone's).
    """
    return f"_INBOX.{device}"


def viewer_inbox_prefix(name: str) -> str:
    """The reply-subject prefix of a viewer's connections: ``_INBOX._view.<name>``.

    ``_view`` can never be a device id (no underscore in a DNS label), so no device's inbox
    (``_INBOX.<device>.>``) covers a viewer's, and a viewer, allowed only below its own prefix,
    sees neither a device's replies (its direct-get answers) nor another client's.
    """
    return f"_INBOX._view.{name}"


#: Device ids reserved for simulated devices (``fleet sim``): a real device is never issued
#: credentials for one, and a ``sim`` credential may act only for ids that start with it and are
#: not a real device's (docs/sim.md).
SIM_DEVICE_PREFIX = "sim-"


def is_simulated(device: DeviceId | str) -> bool:
    """True for a device id reserved for the simulator."""
    return str(device).startswith(SIM_DEVICE_PREFIX)


def sim_inbox_prefix(name: str) -> str:
    """The reply-subject prefix of a simulator's connections: ``_INBOX._sim.<name>`` (``_sim``
    can never be a device id, like a viewer's ``_view``)."""
    return f"_INBOX._sim.{name}"
