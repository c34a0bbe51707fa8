"""Turning a captured log record into a bounded, valid :class:`LogLine` (pure, no I/O).

The contract bounds every field; building a ``msgspec.Struct`` does not check those bounds, so
this module is what guarantees that a line the agent ships will decode on the other side: long
messages and field values are cut (with :data:`TRUNCATION_MARKER` and ``truncated=True``), odd
field names are made valid, values that are not JSON scalars become text, and a line whose
encoding is still over :data:`LOG_LINE_MAX_BYTES` (escaping can grow text up to six times) is
shrunk until it fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from harmony_fleet.contracts import (
    DeviceId,
    InstanceId,
    LogLevel,
    LogLine,
    Role,
    UpgradeId,
    Version,
    encode,
)
from harmony_fleet.contracts.logs import (
    LOG_LINE_MAX_BYTES,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_MSG_BYTES,
    TRUNCATION_MARKER,
)

#: msgspec encodes integers up to 64 bits; larger ones travel as text.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_KEY_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_LOGGER_MAX = 128


@dataclass(frozen=True, slots=True)
class Identity:
    """Who ships: the same on every line of one agent instance."""

    device_id: DeviceId
    instance_id: InstanceId
    agent_version: Version
    role: Role
    upgrade_id: UpgradeId | None = None


@dataclass(slots=True)
class Pending:
    """A line captured by the handler or the journal reader, not yet bounded or encoded."""

    source: str
    seq: int
    ts: float
    level: LogLevel
    logger: str
    msg: str
    fields: dict[str, Any] | None = None


_LEVELS = {
    10: LogLevel.DEBUG,
    20: LogLevel.INFO,
    30: LogLevel.WARNING,
    40: LogLevel.ERROR,
    50: LogLevel.CRITICAL,
}


def level_of(levelno: int) -> LogLevel:
    """Python's numeric level to ours (custom levels round down to the nearest named one)."""
    named = _LEVELS.get(levelno)
    if named is not None:
        return named
    for number in (50, 40, 30, 20):
        if levelno >= number:
            return _LEVELS[number]
    return LogLevel.DEBUG


def cut_bytes(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary) plus the marker."""
    if len(text) <= limit // 4:  # fast path: even 4-byte characters cannot exceed the limit
        return text, False
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text, False
    return raw[:limit].decode("utf-8", "ignore") + TRUNCATION_MARKER, True


def _clean(text: str) -> str:
    """Lone surrogates (from ``surrogateescape`` decoding) cannot be encoded: replace them."""
    return text.encode("utf-8", "replace").decode("utf-8")


_KEYS: dict[str, str] = {}
_KEYS_MAX = 4096


def _key(name: str) -> str:
    """A valid field name for ``name`` (the same few names recur: the answers are cached)."""
    key = _KEYS.get(name)
    if key is not None:
        return key
    key = _KEY_BAD.sub("_", name)[:64]
    if not key or not (key[0].isalpha() or key[0] == "_"):
        key = ("_" + key)[:64]
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[name] = key
    return key


def _value(value: Any) -> tuple[Any, bool]:
    if value is None or isinstance(value, bool | float):
        return value, False
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return value, False
        value = str(value)
    elif not isinstance(value, str):
        try:
            value = str(value)
        except Exception:  # a broken __str__ must not lose the line
            value = f"<unprintable {type(value).__name__}>"
    if len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + TRUNCATION_MARKER, True
    return value, False


def bound_fields(fields: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """At most :data:`MAX_FIELDS` fields with valid keys and scalar, bounded values."""
    if not fields:
        return {}, False
    out: dict[str, Any] = {}
    cut = False
    for name, raw in fields.items():
        if len(out) >= MAX_FIELDS:
            return out, True
        kind = type(raw)
        if (
            (kind is str and len(raw) <= MAX_FIELD_CHARS)
            or (kind is int and _INT_MIN <= raw <= _INT_MAX)
            or kind is float
            or kind is bool
        ):
            value = raw  # the common cases, without the general path's checks
        else:
            value, shortened = _value(raw)
            cut = cut or shortened
        out[_key(name if type(name) is str else str(name))] = value
    return out, cut


def build_line(who: Identity, pending: Pending) -> tuple[LogLine, bytes]:
    """The bounded line for ``pending`` and its encoding (never over LOG_LINE_MAX_BYTES)."""
    msg, cut_msg = cut_bytes(pending.msg, MAX_MSG_BYTES)
    fields, cut_fields = bound_fields(pending.fields)
    line = LogLine(
        device_id=who.device_id,
        instance_id=who.instance_id,
        agent_version=who.agent_version,
        role=who.role,
        upgrade_id=who.upgrade_id,
        source=pending.source,
        seq=pending.seq,
        ts=max(0.0, pending.ts),
        level=pending.level,
        logger=pending.logger[:_LOGGER_MAX],
        msg=msg,
        fields=fields,
        truncated=cut_msg or cut_fields,
    )
    try:
        data = encode(line)
    except UnicodeEncodeError:
        line = msgspec.structs.replace(
            line,
            msg=_clean(line.msg),
            logger=_clean(line.logger),
            fields={_clean(k): _clean(v) if isinstance(v, str) else v for k, v in fields.items()},
        )
        data = encode(line)
    limit = MAX_MSG_BYTES
    while len(data) > LOG_LINE_MAX_BYTES:
        # Escaping (control characters as \u00XX) made it too large: drop the fields, then
        # halve the message until it fits. Rare; correctness over elegance.
        limit //= 2
        msg, _ = cut_bytes(_clean(pending.msg), limit)
        line = msgspec.structs.replace(line, msg=msg, fields={}, truncated=True)
        data = encode(line)
    return line, data
