"""From a ``Rollout`` resource's ``spec`` to the rollout in NATS KV, or to a reason why not: pure.

The Kubernetes ``Rollout`` is a second way to write what ``fleet rollout create`` writes; the
operator's rollout loop drives it like any other (docs/rollouts.md). These functions decide, from
the resource's spec and the rollout already in ``fleet_rollouts`` (if any), what to put there:

* no rollout of that name yet: the spec becomes a new :class:`Rollout` (created now, by
  ``kubernetes:<namespace>/<name>``);
* one this resource created: only the levers follow the spec (``spec.paused``; ``spec.undo``,
  which, like ``fleet rollout undo``, cannot be taken back); any other change is refused with a
  ``SpecValid`` condition (``Immutable``), as ``fleet rollout create`` cannot edit a rollout
  either: a new version is a new rollout;
* one somebody else created (``fleet rollout create``): refused (``NameTaken``), never touched;
* the resource deleted: its rollout is aborted (devices already upgrading finish by themselves).

Spec fields, camelCase, each the matching ``fleet rollout create`` flag: ``version``,
``selector`` (labels), ``canary`` and ``maxInFlight`` (``5`` or ``"2%"``), ``maxDownloads``,
``spreadSeconds``, ``soakSeconds``, ``haltFailureRate`` (percent), ``windows``
(``"Mon-Fri 02:00-05:00 Europe/Paris"``), ``deadline`` (RFC 3339), ``strata``, ``timeouts``
(the Device's camelCase ``UpgradeTimeouts``), and the levers ``paused`` and ``undo``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from harmony_fleet.contracts import Rollout, Share
from harmony_fleet.contracts.rollout import CREATED_BY_KUBERNETES, rollout_name
from harmony_fleet.core.rollout import parse_window
from harmony_fleet.errors import InvalidMessage
from harmony_fleet.operator.kubernetes.decisions import TIMEOUT_FIELDS
from harmony_fleet.operator.kubernetes.resources import SpecReason

#: ``Rollout.created_by`` of the rollouts a resource created: ``kubernetes:<ns>/<name>``.
CREATED_BY_PREFIX = CREATED_BY_KUBERNETES

#: spec key -> Rollout field, for the fields that are plain values.
_PLAIN = {
    "version": "version",
    "selector": "selector",
    "maxDownloads": "max_downloads",
    "spreadSeconds": "spread_s",
    "soakSeconds": "soak_s",
    "haltFailureRate": "halt_failure_rate",
    "strata": "strata",
}
_SHARES = {"canary": "canary", "maxInFlight": "max_in_flight"}
_LEVERS = ("paused", "undo")
KNOWN = frozenset({*_PLAIN, *_SHARES, *_LEVERS, "windows", "deadline", "timeouts"})
#: A Rollout field's path in a validation error -> the spec key a person wrote.
_SPEC_NAMES = {
    f"`$.{field}": f"`spec.{key}"
    for key, field in {
        **_PLAIN,
        **_SHARES,
        "windows": "windows",
        "deadline": "deadline",
        "timeouts": "timeouts",
        "paused": "paused",
        "undo": "undo_requested",
    }.items()
} | {f"`spec.timeouts.{field}`": f"`spec.timeouts.{key}`" for key, field in TIMEOUT_FIELDS.items()}


@dataclass(frozen=True, kw_only=True)
class Problem:
    """Why a spec cannot be acted on (shown as the ``SpecValid`` condition)."""

    reason: SpecReason
    message: str


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What to put in ``fleet_rollouts`` (None: nothing), and the ``SpecValid`` condition."""

    put: Rollout | None
    valid: bool
    reason: SpecReason
    message: str


def source_of(namespace: str, name: str) -> str:
    return f"{CREATED_BY_PREFIX}{namespace}/{name}"


def _share(key: str, raw: Any) -> Share | Problem:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return Problem(
            reason=SpecReason.INVALID_SPEC, message=f"spec.{key}: a count or a percent like 10%"
        )
    try:
        return Share.parse(str(raw))
    except InvalidMessage as exc:
        return Problem(reason=SpecReason.INVALID_SPEC, message=f"spec.{key}: {exc.reason}")


def _deadline(raw: Any) -> float | Problem:
    try:
        moment = datetime.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return Problem(
            reason=SpecReason.INVALID_SPEC,
            message=f"spec.deadline: {raw!r} is not an RFC 3339 time (2026-12-24T18:00:00Z)",
        )
    return moment.timestamp()


def parse(
    name: str, spec: Mapping[str, Any], *, created_at: float, created_by: str
) -> Rollout | Problem:
    """The :class:`Rollout` a resource's spec asks for (levers included)."""
    try:
        rollout_name(name)
    except InvalidMessage:
        return Problem(
            reason=SpecReason.INVALID_NAME,
            message=f"metadata.name {name!r} is not a valid rollout name (a DNS label)",
        )
    unknown = sorted(set(spec) - KNOWN)
    if unknown:
        return Problem(
            reason=SpecReason.INVALID_SPEC,
            message=f"spec: unknown {', '.join(unknown)} (known: {', '.join(sorted(KNOWN))})",
        )
    if not spec.get("version"):
        return Problem(reason=SpecReason.INVALID_VERSION, message="spec.version is required")
    fields: dict[str, Any] = {
        "name": name,
        "created_at": created_at,
        "created_by": created_by,
        "paused": spec.get("paused", False),
        "undo_requested": spec.get("undo", False),
    }
    fields.update({field: spec[key] for key, field in _PLAIN.items() if key in spec})
    for key, field in _SHARES.items():
        if key in spec:
            share = _share(key, spec[key])
            if isinstance(share, Problem):
                return share
            fields[field] = share
    if "windows" in spec:
        try:
            fields["windows"] = [parse_window(str(w)) for w in spec["windows"] or []]
        except (InvalidMessage, TypeError) as exc:
            why = exc.reason if isinstance(exc, InvalidMessage) else str(exc)
            return Problem(reason=SpecReason.INVALID_SPEC, message=f"spec.windows: {why}")
    if spec.get("deadline"):
        deadline = _deadline(spec["deadline"])
        if isinstance(deadline, Problem):
            return deadline
        fields["deadline"] = deadline
    if spec.get("timeouts"):
        raw = spec["timeouts"]
        if not isinstance(raw, Mapping) or set(raw) - set(TIMEOUT_FIELDS):
            return Problem(
                reason=SpecReason.INVALID_SPEC,
                message=f"spec.timeouts: known fields are {', '.join(TIMEOUT_FIELDS)}",
            )
        fields["timeouts"] = {TIMEOUT_FIELDS[k]: v for k, v in raw.items()}
    try:
        return msgspec.convert(fields, Rollout)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for old, new in _SPEC_NAMES.items():
            text = text.replace(old, new)
        reason = SpecReason.INVALID_VERSION if "spec.version" in text else SpecReason.INVALID_SPEC
        return Problem(reason=reason, message=text)


def _definition(rollout: Rollout) -> Rollout:
    """The rollout without what may change after creation (levers, provenance)."""
    return msgspec.structs.replace(
        rollout,
        paused=False,
        undo_requested=False,
        aborted=False,
        created_at=0.0,
        created_by="",
    )


def reconcile(
    name: str,
    spec: Mapping[str, Any],
    existing: Rollout | None,
    *,
    namespace: str,
    now: float,
) -> Verdict:
    """What the resource ``namespace/name`` with ``spec`` asks of ``fleet_rollouts`` now."""
    source = source_of(namespace, name)
    wanted = parse(
        name,
        spec,
        created_at=existing.created_at if existing is not None else now,
        created_by=source,
    )
    if isinstance(wanted, Problem):
        return Verdict(put=None, valid=False, reason=wanted.reason, message=wanted.message)
    if existing is None:
        return Verdict(
            put=wanted,
            valid=True,
            reason=SpecReason.ACCEPTED,
            message=f"rollout {name} of {wanted.version} created",
        )
    if existing.created_by != source:
        return Verdict(
            put=None,
            valid=False,
            reason=SpecReason.NAME_TAKEN,
            message=f"a rollout {name} exists already, created by {existing.created_by or '?'}"
            " (fleet rollout create): this resource does not drive it; pick another name",
        )
    levers = msgspec.structs.replace(
        existing,
        paused=wanted.paused,
        undo_requested=existing.undo_requested or wanted.undo_requested,
    )
    put = levers if levers != existing else None
    if _definition(wanted) != _definition(existing):
        return Verdict(
            put=put,
            valid=False,
            reason=SpecReason.IMMUTABLE,
            message="only spec.paused and spec.undo change a rollout once created; "
            "to roll out something else, create a new Rollout",
        )
    return Verdict(put=put, valid=True, reason=SpecReason.ACCEPTED, message="")


def abandoned(existing: Rollout, *, namespace: str, names: set[str]) -> Rollout | None:
    """A rollout whose resource is gone, aborted (None: not ours, gone already, or ended)."""
    if not existing.created_by.startswith(f"{CREATED_BY_PREFIX}{namespace}/"):
        return None
    if existing.created_by != source_of(namespace, existing.name):
        return None
    if existing.name in names or existing.aborted or existing.undo_requested:
        return None
    return msgspec.structs.replace(existing, aborted=True)
