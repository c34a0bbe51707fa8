"""From ``Device.spec`` to an upgrade marker, or to a reason why not: pure functions.

Three steps, each a function the kopf handler calls in turn:

1. :func:`parse_spec`: is the spec usable? (a valid device name, a valid version string);
2. :func:`plan`: given the marker and status already in NATS KV and the version the device runs,
   is a new marker needed? This is where restarts and duplicate handler calls are made safe:
   a marker for the same target that is still in flight is never rewritten;
3. :func:`marker_for`: the target's signed release (looked up in the signed release metadata,
   :mod:`harmony_fleet.operator.releases`) turns the plan into a marker (an unknown release is
   a problem that may go away once someone publishes it).

The trigger matters once: a *change* of the spec to a target whose last upgrade failed or rolled
back is a person asking again (a new marker); a *resume* after an operator restart is not, so a
restart never retries a failed upgrade by itself.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceId,
    UpgradeId,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    Version,
    device_id,
    version,
)
from harmony_fleet.core.upgrade.trust import SignedRelease
from harmony_fleet.errors import InvalidMessage
from harmony_fleet.operator.kubernetes.resources import REQUESTED_BY_PREFIX, SpecReason


def spec_name(field_name: str) -> str:
    """A contract field's name in ``spec.timeouts``: ``self_test_s`` -> ``selfTestSeconds``."""
    words = field_name.split("_")
    if words[-1] == "s":
        words[-1] = "seconds"
    return words[0] + "".join(w.capitalize() for w in words[1:])


#: ``spec.timeouts`` keys -> :class:`UpgradeTimeouts` fields (generated, so they cannot drift).
TIMEOUT_FIELDS = {spec_name(f): f for f in UpgradeTimeouts.__struct_fields__}


class Trigger(enum.Enum):
    CHANGE = "change"
    """The resource was created or its spec changed: a person or a tool asked for something."""
    RESUME = "resume"
    """The operator (re)started and looks at an existing resource: reconcile only."""


@dataclass(frozen=True, kw_only=True)
class Desired:
    """A usable spec: the version the device should run."""

    device: DeviceId
    version: Version
    force: bool = False
    timeouts: UpgradeTimeouts = field(default_factory=UpgradeTimeouts)


@dataclass(frozen=True, kw_only=True)
class SpecProblem:
    """Why a spec cannot be acted on. ``retry``: it may resolve without a spec change."""

    reason: SpecReason
    message: str
    retry: bool = False


class Action(enum.Enum):
    NOTHING = "nothing"
    WRITE_MARKER = "write_marker"


@dataclass(frozen=True, kw_only=True)
class Plan:
    action: Action
    why: str


def parse_spec(name: str, spec: Mapping[str, Any]) -> Desired | SpecProblem | None:
    """Validate ``spec`` of the Device named ``name``; None when it asks for no version."""
    try:
        dev = device_id(name)
    except InvalidMessage:
        return SpecProblem(
            reason=SpecReason.INVALID_NAME,
            message=f"metadata.name {name!r} is not a valid device id (a DNS label)",
        )
    raw = spec.get("agentVersion")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        return SpecProblem(
            reason=SpecReason.INVALID_VERSION,
            message=f"spec.agentVersion must be a string, not {type(raw).__name__}",
        )
    try:
        target = version(raw)
    except InvalidMessage as exc:
        return SpecProblem(
            reason=SpecReason.INVALID_VERSION, message=f"spec.agentVersion: {exc.reason}"
        )
    force = spec.get("force", False)
    if not isinstance(force, bool):
        return SpecProblem(
            reason=SpecReason.INVALID_SPEC,
            message=f"spec.force must be true or false, not {force!r}",
        )
    timeouts = _timeouts(spec.get("timeouts"))
    if isinstance(timeouts, SpecProblem):
        return timeouts
    return Desired(device=dev, version=target, force=force, timeouts=timeouts)


def _timeouts(raw: Any) -> UpgradeTimeouts | SpecProblem:
    if raw is None:
        return UpgradeTimeouts()
    if not isinstance(raw, Mapping):
        return SpecProblem(reason=SpecReason.INVALID_SPEC, message="spec.timeouts must be a map")
    unknown = sorted(set(raw) - set(TIMEOUT_FIELDS))
    if unknown:
        return SpecProblem(
            reason=SpecReason.INVALID_SPEC,
            message=f"spec.timeouts: unknown {', '.join(unknown)} (known: "
            f"{', '.join(TIMEOUT_FIELDS)})",
        )
    try:
        return msgspec.convert({TIMEOUT_FIELDS[k]: v for k, v in raw.items()}, UpgradeTimeouts)
    except msgspec.ValidationError as exc:
        names = {f"`$.{f}`": f"spec.timeouts.{k}" for k, f in TIMEOUT_FIELDS.items()}
        text = str(exc)
        for old, new in names.items():
            text = text.replace(old, new)
        return SpecProblem(reason=SpecReason.INVALID_SPEC, message=f"spec.timeouts: {text}")


def in_flight(marker: UpgradeMarker, status: UpgradeStatus | None) -> bool:
    """The marker's upgrade has not reached a terminal phase (as far as the status says)."""
    return status is None or status.upgrade_id != marker.upgrade_id or not status.phase.terminal


def plan(
    desired: Desired,
    *,
    trigger: Trigger,
    current_version: str | None,
    marker: UpgradeMarker | None,
    status: UpgradeStatus | None,
) -> Plan:
    """Whether ``desired`` needs a new marker, given what NATS KV holds for the device."""
    target = desired.version
    if marker is not None and marker.target_version == target:
        if in_flight(marker, status):
            return Plan(
                action=Action.NOTHING,
                why=f"upgrade {marker.upgrade_id} to {target} is already in flight",
            )
        assert status is not None  # not in flight: a terminal status for this marker exists
        if status.phase is AgentUpgradePhase.SUCCEEDED or current_version == target:
            return Plan(action=Action.NOTHING, why=f"the device runs {target}")
        if trigger is Trigger.RESUME:
            return Plan(
                action=Action.NOTHING,
                why=(
                    f"upgrade {marker.upgrade_id} to {target} ended {status.phase.value}; "
                    "change spec.agentVersion (or set spec.force) to ask again"
                ),
            )
        return Plan(
            action=Action.WRITE_MARKER,
            why=f"asked again after upgrade {marker.upgrade_id} ended {status.phase.value}",
        )
    if current_version == target:
        if marker is not None and in_flight(marker, status):
            # Writing a marker back to the running version cancels the one in flight (ADR-022).
            return Plan(
                action=Action.WRITE_MARKER,
                why=f"cancel upgrade {marker.upgrade_id} to {marker.target_version}",
            )
        return Plan(action=Action.NOTHING, why=f"the device runs {target}")
    return Plan(action=Action.WRITE_MARKER, why=f"upgrade to {target}")


def marker_for(
    desired: Desired,
    release: SignedRelease | None,
    *,
    upgrade_id: UpgradeId,
    now: float,
    source: str,
) -> UpgradeMarker | SpecProblem:
    """The marker for ``desired`` from its signed release; a problem if there is none."""
    if release is None or release.version != desired.version:
        return SpecProblem(
            reason=SpecReason.UNKNOWN_RELEASE,
            message=(
                f"no signed release {desired.version}; publish it with "
                f"`fleet release publish ARTIFACT --version {desired.version}`"
            ),
            retry=True,
        )
    return UpgradeMarker(
        upgrade_id=upgrade_id,
        device_id=desired.device,
        target_version=desired.version,
        artifact_url=release.url,
        sha256=release.sha256,
        size=release.length,
        requested_at=now,
        requested_by=f"{REQUESTED_BY_PREFIX}{source}",
        force=desired.force,
        timeouts=desired.timeouts,
    )
