"""Log lines shipped by agents: one :class:`LogLine` per message on ``fleet.<dev>.logs.<source>``.

A device ships its agent's own structured log (source ``agent``) and, optionally, the journal of
configured systemd units (source ``unit.<name>``), one source per published subject. The log
stream keeps a device's lines under two subjects only (:func:`stored_subject`): its agent's, and
one for all its units, so that the per-subject limit is a per-device quota no invented unit name
can escape.

Every field is bounded so that one line can never cost more than :data:`LOG_LINE_MAX_BYTES` on
the wire: the shipper truncates long messages and field values (and sets ``truncated``), and
:data:`LOG_LINE` refuses anything larger before parsing it. ``seq`` counts every line a source
*offered* to the shipper, shipped or not, so a gap in ``seq`` is exactly the lines dropped there.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

import msgspec

from harmony_fleet.contracts.heartbeat import Role
from harmony_fleet.contracts.ids import (
    DeviceIdField,
    InstanceIdField,
    NonNegFloat,
    NonNegInt,
    UpgradeIdField,
    VersionField,
    whole,
)
from harmony_fleet.contracts.subjects import PREFIX
from harmony_fleet.errors import InvalidMessage

LOG_LINE_SCHEMA_VERSION = 1

#: Largest encoded log line accepted anywhere (decoder, stream ``max_msg_size``).
LOG_LINE_MAX_BYTES = 16 * 1024
#: Longest message kept (in UTF-8 bytes, so also in characters) before truncation.
MAX_MSG_BYTES = 8 * 1024
#: At most this many structured fields per line, each value at most MAX_FIELD_CHARS.
MAX_FIELDS = 32
MAX_FIELD_CHARS = 256
#: Marker appended to whatever was cut short (and ``truncated`` is set on the line).
TRUNCATION_MARKER = "…[truncated]"

#: The agent's own log.
SOURCE_AGENT = "agent"
#: Prefix of the source of a systemd unit's journal: ``unit.<sanitized name>``.
SOURCE_UNIT_PREFIX = "unit."
SOURCE_PATTERN = whole(r"(?:agent|unit\.[A-Za-z0-9_-]{1,64})")
FIELD_KEY_PATTERN = whole(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

SourceField = Annotated[str, msgspec.Meta(pattern=SOURCE_PATTERN, max_length=69)]
LoggerName = Annotated[str, msgspec.Meta(max_length=128)]
Message = Annotated[str, msgspec.Meta(max_length=MAX_MSG_BYTES + len(TRUNCATION_MARKER))]
FieldKey = Annotated[str, msgspec.Meta(pattern=FIELD_KEY_PATTERN)]
FieldText = Annotated[str, msgspec.Meta(max_length=MAX_FIELD_CHARS + len(TRUNCATION_MARKER))]
FieldValue = FieldText | int | float | bool | None
Fields = Annotated[dict[FieldKey, FieldValue], msgspec.Meta(max_length=MAX_FIELDS)]


class LogLevel(enum.StrEnum):
    """Python's level names, lowercase; journald priorities map onto them."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One log line of one source of one agent instance."""

    v: int = LOG_LINE_SCHEMA_VERSION
    device_id: DeviceIdField
    instance_id: InstanceIdField
    """The agent process that shipped it: how a failed candidate's lines are found."""
    agent_version: VersionField
    role: Role
    source: SourceField
    seq: NonNegInt
    """Per (instance, source), counting dropped lines too: a gap is a drop."""
    ts: NonNegFloat
    """Unix time in seconds when the line was written (the device's clock)."""
    level: LogLevel
    logger: LoggerName = ""
    msg: Message
    fields: Fields = {}
    truncated: bool = False
    """Something (the message, a field) was cut short or left out to respect the bounds."""
    upgrade_id: UpgradeIdField | None = None
    """Set on a candidate's lines: the upgrade it was started for."""


_UNIT_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_SOURCE_RE = re.compile(SOURCE_PATTERN)


def unit_source(unit: str) -> str:
    """The source name of a systemd unit: ``nginx.service`` -> ``unit.nginx``.

    A subject token cannot hold ``.``, ``*``, ``>`` or spaces, so everything outside
    ``[A-Za-z0-9_-]`` becomes ``_``; the ``.service`` suffix is dropped (it is the default).
    """
    name = unit.removesuffix(".service")
    name = _UNIT_CHARS.sub("_", name).strip("_")[:64]
    if not name:
        raise InvalidMessage("unit", f"{unit!r} is not a usable unit name", type_name="log source")
    return SOURCE_UNIT_PREFIX + name


def source(value: str) -> str:
    """Validate a source given by a person: ``agent``, ``unit.NAME`` or a unit name."""
    if _SOURCE_RE.fullmatch(value):
        return value
    return unit_source(value)


def log_subject(device: str, source_name: str) -> str:
    """Subject one source of one device publishes on: ``fleet.<device>.logs.<source>``."""
    return f"{PREFIX}.{device}.logs.{source_name}"


#: Where the log stream *stores* every unit source of a device: all ``unit.<name>`` subjects of
#: one device share this one stored subject (the stream's subject transform), so a device holds
#: at most two stored subjects, whatever unit names it invents (docs/logs.md, quotas).
STORED_UNITS = "units"


def stored_subject(device: str, source_name: str) -> str:
    """The subject the log stream keeps one source's lines under: its own for ``agent``,
    ``fleet.<device>.logs.units`` for every unit."""
    if source_name.startswith(SOURCE_UNIT_PREFIX):
        return f"{PREFIX}.{device}.logs.{STORED_UNITS}"
    return log_subject(device, source_name)


def device_logs(device: str) -> str:
    """Wildcard over every source of one device."""
    return f"{PREFIX}.{device}.logs.>"


#: Every log subject of every device: what the log stream captures.
ALL_LOGS = f"{PREFIX}.*.logs.>"
