"""What a ``Rollout`` resource's ``status`` should say, from the rollout's status in KV: pure.

The engine's :class:`RolloutStatus` (``fleet_rollout_status``) is the truth; the resource shows
it the way ``kubectl get rollouts`` reads it (the CRD's printer columns): ``phase``, ``wave``,
and three counts a person scans: ``done`` (succeeded), ``failed`` (failed or rolled back) and
``pending`` (not final yet: waiting or upgrading; ``inProgress`` and ``skipped`` are there too),
then the halt (why, and the first devices), the undo's counts, and the ``SpecValid`` condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harmony_fleet.contracts.rollout import DeviceState, RolloutStatus
from harmony_fleet.operator.kubernetes.resources import ConditionStatus, ConditionType
from harmony_fleet.operator.kubernetes.statuses import MAX_MESSAGE, rfc3339

S = DeviceState
#: Devices of a halt shown on the resource (the KV status keeps 100; ``fleet rollout status``).
MAX_HALTED_SHOWN = 20


def counts(by_state: Mapping[DeviceState, int]) -> dict[str, int]:
    """The per-state counts as the resource shows them."""
    got = {state: by_state.get(state, 0) for state in DeviceState}
    return {
        "done": got[S.SUCCEEDED],
        "failed": got[S.FAILED] + got[S.ROLLED_BACK],
        "pending": got[S.PENDING] + got[S.IN_PROGRESS],
        "inProgress": got[S.IN_PROGRESS],
        "skipped": got[S.SKIPPED],
    }


def rollout_status(
    status: RolloutStatus | None,
    *,
    version: str | None,
    valid: bool,
    reason: str,
    message: str,
    previous: Mapping[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """The whole ``status`` of one Rollout resource. ``status`` None: not driven yet (or the
    spec was refused); ``previous`` is the resource's status now (for ``lastTransitionTime``)."""
    body: dict[str, Any] = {}
    if status is not None:
        body.update(phase=status.phase.value, wave=status.wave, **counts(status.counts))
        if version is not None:
            body["version"] = version
        if status.halt_reason:
            body["haltReason"] = status.halt_reason[:MAX_MESSAGE]
            body["haltedDevices"] = [
                {"device": d.device_id, "state": d.state.value, "reason": d.reason[:256]}
                for d in status.halted_devices[:MAX_HALTED_SHOWN]
            ]
        if status.halted_at is not None:
            body["haltedAt"] = rfc3339(status.halted_at)
        if status.undo_counts:
            body["undo"] = counts(status.undo_counts)
        if status.updated_at:
            body["updatedAt"] = rfc3339(status.updated_at)
    body["conditions"] = [
        _spec_condition(valid=valid, reason=reason, message=message, previous=previous, now=now)
    ]
    return body


def _spec_condition(
    *, valid: bool, reason: str, message: str, previous: Mapping[str, Any] | None, now: float
) -> dict[str, str]:
    state = (ConditionStatus.TRUE if valid else ConditionStatus.FALSE).value
    since = rfc3339(now)
    for old in _conditions(previous):
        if old.get("type") == ConditionType.SPEC_VALID.value and old.get("status") == state:
            since = str(old.get("lastTransitionTime") or since)
    return {
        "type": ConditionType.SPEC_VALID.value,
        "status": state,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": since,
    }


def _conditions(previous: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    found = (previous or {}).get("conditions")
    if not isinstance(found, Sequence):
        return []
    return [c for c in found if isinstance(c, Mapping)]
