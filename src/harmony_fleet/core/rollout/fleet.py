"""What the engine sees of the fleet, and the per-device rules: membership, pre-flight gates,
what an upgrade status means for the rollout, stable ranks and ids.

The operator builds one :class:`DeviceView` per device from its registry record (labels,
online, version), its upgrade status and its marker; the engine never reads anything else.
Facts the gates read come from the device's labels (``executor``, ``free_disk_bytes``,
``time_zone``): a fact a device does not report passes its gate (the agent's own preflight
still refuses a full disk), a fact it reports wrongly fails it. The version's skip list comes
with the release (signed, ``Release.skip``): device ids and ``label=value`` entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harmony_fleet.contracts.ids import DeviceId, UpgradeId
from harmony_fleet.contracts.rollout import (
    LABEL_EXECUTOR,
    LABEL_FREE_DISK,
    LABEL_TIME_ZONE,
    DeviceState,
    Rollout,
)
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, ErrorCode, UpgradeStatus

#: Executors a rollout knows how to upgrade (``agent run --executor``).
KNOWN_EXECUTORS = frozenset({"process", "systemd"})
#: Free disk a device needs, as a multiple of the artifact's size (the download, and the
#: versions kept on disk).
DISK_FACTOR = 2

#: Reasons the engine writes (the agent's error codes are passed through as they are).
HEARTBEAT_LOST = "heartbeat_lost_after_commit"
ALREADY_AT_VERSION = "already_at_version"
DEADLINE_PASSED = "deadline_passed"
OFFLINE = "offline"
OUTSIDE_WINDOW = "outside_window"
SUPERSEDED = "superseded_by_another_upgrade"
WITHDRAWN = "withdrawn_before_start"
NO_PREVIOUS = "previous_version_not_kept"
MOVED_ON = "runs_another_version"
GATE_PREFIX = "gate:"
SKIP_LIST = "skip_list"

#: Phases in which a device is (or is about to be) downloading.
DOWNLOADING = frozenset({AgentUpgradePhase.REQUESTED, AgentUpgradePhase.STAGING})


@dataclass(frozen=True, kw_only=True)
class UpgradeView:
    """The part of a device's upgrade status the engine reads."""

    upgrade_id: UpgradeId
    phase: AgentUpgradePhase
    error_code: str = ""
    previous_version: str | None = None
    previous_sha256: str | None = None

    @classmethod
    def of(cls, status: UpgradeStatus) -> UpgradeView:
        return cls(
            upgrade_id=status.upgrade_id,
            phase=status.phase,
            error_code=status.error_code,
            previous_version=status.previous_version,
            previous_sha256=status.previous_sha256,
        )


@dataclass(frozen=True, kw_only=True)
class DeviceView:
    """One device as the engine sees it."""

    device_id: DeviceId
    online: bool
    agent_version: str
    labels: Mapping[str, str] = field(default_factory=dict)
    failed_versions: frozenset[str] = frozenset()
    """Versions that failed on this device before (its skip list), when known."""
    upgrade: UpgradeView | None = None
    marker_upgrade_id: UpgradeId | None = None
    """The upgrade id its marker holds now (None: no marker)."""

    @property
    def executor(self) -> str | None:
        return self.labels.get(LABEL_EXECUTOR)

    @property
    def time_zone(self) -> str | None:
        return self.labels.get(LABEL_TIME_ZONE) or None

    @property
    def free_disk(self) -> int | None:
        text = self.labels.get(LABEL_FREE_DISK)
        if text is None:
            return None
        try:
            return max(int(text), 0)
        except ValueError:
            return 0  # a fact reported wrongly fails the gate

    def status_of(self, upgrade_id: UpgradeId | None) -> UpgradeView | None:
        """Its status if it is about ``upgrade_id``."""
        if upgrade_id is None or self.upgrade is None or self.upgrade.upgrade_id != upgrade_id:
            return None
        return self.upgrade

    def marker_written(self, upgrade_id: UpgradeId | None) -> bool:
        """The marker for ``upgrade_id`` is (or was) on the device's key."""
        return upgrade_id is not None and (
            self.marker_upgrade_id == upgrade_id or self.status_of(upgrade_id) is not None
        )


def selected(rollout: Rollout, device: DeviceView) -> bool:
    """The device carries every label of the rollout's selector."""
    return all(device.labels.get(k) == v for k, v in rollout.selector.items())


def skipped_by(skip: Sequence[str], device: DeviceView) -> str | None:
    """The entry of the version's skip list that names ``device`` (its id, or one of its
    ``label=value``), or None."""
    for entry in skip:
        key, sep, value = entry.partition("=")
        if (not sep and entry == device.device_id) or (sep and device.labels.get(key) == value):
            return entry
    return None


def gate(
    rollout: Rollout,
    device: DeviceView,
    artifact_size: int | None,
    skip: Sequence[str] = (),
) -> str | None:
    """The pre-flight gate the device fails (a reason starting with ``gate:``), or None.

    ``skip`` is the version's skip list, signed with the release (``Release.skip``)."""
    entry = skipped_by(skip, device)
    if entry is not None:
        return f"{GATE_PREFIX}{SKIP_LIST} {entry[:256]}"
    if rollout.version in device.failed_versions:
        return f"{GATE_PREFIX}{ErrorCode.VERSION_FAILED_BEFORE.value}"
    executor = device.executor
    if executor is not None and executor not in KNOWN_EXECUTORS:
        return f"{GATE_PREFIX}unknown_executor {executor[:64]}"
    free = device.free_disk
    if artifact_size is not None and free is not None and free < DISK_FACTOR * artifact_size:
        return f"{GATE_PREFIX}insufficient_disk {free} < {DISK_FACTOR} x {artifact_size}"
    return None


def outcome(device: DeviceView, upgrade_id: UpgradeId | None) -> tuple[DeviceState, str] | None:
    """What the device's status says of the upgrade ``upgrade_id`` (None: nothing final yet).

    A failure the version did not cause is not counted against it: a marker another requester
    wrote over ours (Superseded), or the agent refusing a version that failed on it before.
    A device whose new version went silent inside the post-commit watch counts as failed
    (the agent's own watch reverts it if it can; if it comes back Succeeded, that wins).
    """
    view = device.status_of(upgrade_id)
    if view is None:
        return None
    phase = view.phase
    if phase is AgentUpgradePhase.SUCCEEDED:
        return DeviceState.SUCCEEDED, ""
    if phase is AgentUpgradePhase.ROLLED_BACK:
        return DeviceState.ROLLED_BACK, view.error_code or "rolled_back"
    if phase is AgentUpgradePhase.FAILED:
        if view.error_code == ErrorCode.VERSION_FAILED_BEFORE:
            return DeviceState.SKIPPED, view.error_code
        return DeviceState.FAILED, view.error_code or "failed"
    if phase is AgentUpgradePhase.SUPERSEDED:
        return DeviceState.SKIPPED, SUPERSEDED
    if phase is AgentUpgradePhase.COMMITTED and not device.online:
        return DeviceState.FAILED, HEARTBEAT_LOST
    return None


def rank(salt: str, device: str) -> float:
    """A stable pseudo-random number in [0, 1) per device and rollout: the order devices are
    picked in and the fraction of the spread their start waits (the same on every replay)."""
    digest = hashlib.sha256(f"{salt}|{device}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def salt_of(rollout: Rollout) -> str:
    """What makes two rollouts of the same name (created at different times) differ."""
    return f"{rollout.name}|{rollout.created_at!r}"


def upgrade_id_for(rollout: Rollout, device: str, *, undo: bool = False) -> UpgradeId:
    """The upgrade id of this rollout's marker for ``device``: derived, so a replayed plan (an
    operator restarted between writing the record and the marker) writes the same marker."""
    kind = "undo" if undo else "up"
    digest = hashlib.sha256(f"{salt_of(rollout)}|{device}|{kind}".encode()).hexdigest()
    return UpgradeId(f"r{'u' if undo else ''}{digest[:30]}")
