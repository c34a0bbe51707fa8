"""What a ``Device``'s ``status`` should say, from what the operator knows: pure functions.

Inputs are the contracts (the registry's :class:`DeviceRecord`, the marker and the agent's
:class:`UpgradeStatus` of the upgrade in hand) and the verdict on ``spec``; the output is a
:class:`~.bodies.DeviceStatusBody`. :func:`status_patch` compares it with what the resource says
now and returns the merge patch to send, or None when nothing changed, so a restarted operator
patches only what differs and a steady fleet costs no API writes.

Timestamps are whole seconds (``metav1.Time``): finer ones would only make patches that no person
can see. A condition's ``lastTransitionTime`` moves only when its ``status`` changes.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeSummary,
)
from harmony_fleet.core.upgrade.requests import describe
from harmony_fleet.operator.kubernetes.bodies import ConditionBody, DeviceStatusBody, UpgradeBody
from harmony_fleet.operator.kubernetes.resources import (
    ConditionStatus,
    ConditionType,
    SpecReason,
)

#: Kubernetes caps a condition message at 32768 bytes; ours are one line for a person.
MAX_MESSAGE = 1024

_NOT_REASON = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True, kw_only=True)
class SpecVerdict:
    """What the operator made of ``spec`` (the ``SpecValid`` condition)."""

    valid: bool
    reason: SpecReason
    message: str


def rfc3339(ts: float) -> str:
    """Epoch seconds as ``metav1.Time`` (UTC, whole seconds)."""
    moment = datetime.datetime.fromtimestamp(int(ts), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def reason_of(code: str, default: str) -> str:
    """An agent error code (``candidate_exited``) as a condition reason (``CandidateExited``)."""
    words = [w for w in _NOT_REASON.split(code) if w]
    reason = "".join(w[:1].upper() + w[1:] for w in words)
    return reason if reason and reason[0].isalpha() else default


def summary_text(summary: UpgradeSummary, now: float) -> str:
    """The summary for a person: its structured fields rendered now, else its plain message."""
    return describe(summary, now) or summary.message


def _upgrade(
    summary: UpgradeSummary,
    marker: UpgradeMarker | None,
    status: UpgradeStatus | None,
    now: float,
) -> UpgradeBody:
    body = UpgradeBody(
        id=summary.upgrade_id,
        phase=summary.phase.value,
        targetVersion=summary.target_version,
        message=summary_text(summary, now)[:MAX_MESSAGE],
    )
    if summary.watch_until is not None and summary.phase is AgentUpgradePhase.COMMITTED:
        body["watchUntil"] = rfc3339(summary.watch_until)
    # The agent's own timestamps are stable across operator restarts; the summary's are the
    # operator's receive times and are used only when the agent has said nothing yet.
    started = status.started_at if status is not None else None
    if started is None and marker is not None:
        started = marker.requested_at
    if started is not None:
        body["startedAt"] = rfc3339(started)
    same_phase = status is not None and status.phase is summary.phase
    updated = status.updated_at if same_phase and status is not None else summary.updated_at
    body["updatedAt"] = rfc3339(updated)
    return body


def _condition(
    type_: ConditionType, status: ConditionStatus, reason: str, message: str
) -> ConditionBody:
    return ConditionBody(
        type=type_.value,
        status=status.value,
        reason=reason,
        message=message[:MAX_MESSAGE],
        lastTransitionTime="",
    )


def _conditions(
    record: DeviceRecord | None,
    summary: UpgradeSummary | None,
    status: UpgradeStatus | None,
    verdict: SpecVerdict | None,
    now: float,
) -> list[ConditionBody]:
    T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
    out: list[ConditionBody] = []
    if record is None:
        out.append(_condition(ConditionType.ONLINE, U, "NeverSeen", "no heartbeat seen yet"))
    elif record.online:
        out.append(
            _condition(
                ConditionType.ONLINE,
                T,
                "HeartbeatsArriving",
                f"agent {record.current_version} heartbeats every "
                f"{record.heartbeat_interval_s:g} s",
            )
        )
    else:
        out.append(
            _condition(
                ConditionType.ONLINE,
                F,
                "HeartbeatsMissing",
                f"no heartbeat since {rfc3339(record.last_seen)}",
            )
        )

    if summary is None:
        out.append(_condition(ConditionType.UPGRADE_PROGRESSING, F, "NoUpgrade", ""))
        out.append(_condition(ConditionType.ROLLED_BACK, F, "NoUpgrade", ""))
    else:
        what = f"upgrade {summary.upgrade_id} to {summary.target_version}"
        detail = summary_text(summary, now)
        text = f"{what}: {summary.phase.value}" + (f": {detail}" if detail else "")
        progressing = F if summary.phase.terminal else T
        out.append(
            _condition(ConditionType.UPGRADE_PROGRESSING, progressing, summary.phase.value, text)
        )
        if summary.phase is AgentUpgradePhase.ROLLED_BACK:
            code = status.error_code if status is not None else ""
            detail = text
            if status is not None and status.candidate_exit_code is not None:
                detail += f" (candidate exit code {status.candidate_exit_code})"
            out.append(
                _condition(ConditionType.ROLLED_BACK, T, reason_of(code, "RolledBack"), detail)
            )
        else:
            out.append(_condition(ConditionType.ROLLED_BACK, F, summary.phase.value, ""))

    if verdict is not None:
        out.append(
            _condition(
                ConditionType.SPEC_VALID,
                T if verdict.valid else F,
                verdict.reason.value,
                verdict.message,
            )
        )
    return out


def device_status(
    *,
    record: DeviceRecord | None,
    marker: UpgradeMarker | None = None,
    status: UpgradeStatus | None = None,
    verdict: SpecVerdict | None = None,
    previous: Mapping[str, Any] | None = None,
    now: float,
) -> DeviceStatusBody:
    """The whole ``status`` for one device.

    ``marker`` and ``status`` are used only when they belong to the upgrade the record shows;
    ``previous`` is the resource's current ``status`` (for ``lastTransitionTime``).
    """
    summary = record.upgrade if record is not None else None
    if summary is not None:
        marker = marker if marker is not None and marker.upgrade_id == summary.upgrade_id else None
        status = status if status is not None and status.upgrade_id == summary.upgrade_id else None
    else:
        marker = status = None
    body = DeviceStatusBody()
    if record is not None:
        body["currentVersion"] = record.current_version
    if summary is not None:
        body["upgrade"] = _upgrade(summary, marker, status, now)
    old = _previous_conditions(previous)
    stamp = rfc3339(now)
    conditions = _conditions(record, summary, status, verdict, now)
    for cond in conditions:
        before = old.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"]
        cond["lastTransitionTime"] = (
            str(before.get("lastTransitionTime", stamp)) if same and before else stamp
        )
    body["conditions"] = conditions
    return body


def _previous_conditions(previous: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not previous:
        return {}
    found = previous.get("conditions")
    if not isinstance(found, Sequence):
        return {}
    return {
        str(c["type"]): c
        for c in found
        if isinstance(c, Mapping) and isinstance(c.get("type"), str)
    }


def status_patch(
    current: Mapping[str, Any] | None, desired: DeviceStatusBody | Mapping[str, Any]
) -> dict[str, Any] | None:
    """The JSON merge patch that turns ``current`` status into ``desired``, or None if equal.

    A merge patch replaces lists whole and deletes a key given as ``null``; top-level keys that
    the desired status no longer has are therefore sent as ``None``.
    """
    current = dict(current or {})
    wanted: dict[str, Any] = dict(desired)
    if _normalised(current) == _normalised(wanted):
        return None
    patch: dict[str, Any] = {key: None for key in current if key not in wanted}
    for key, value in wanted.items():
        old = current.get(key)
        if key == "upgrade" and isinstance(old, Mapping):
            patch[key] = {**{k: None for k in old if k not in value}, **value}
        else:
            patch[key] = value
    return {"status": patch}


def _normalised(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if v is not None}
