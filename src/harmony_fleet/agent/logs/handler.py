"""A ``logging.Handler`` that feeds the agent's own log lines to the shipper without blocking.

``emit`` runs inside whatever code logs (the event loop, a download worker thread): it formats
the message, picks the structured fields and offers the line to the :class:`LogBuffer`, which
either keeps it (a ``deque`` append) or counts a drop. It never touches NATS, never awaits, and
never raises into the caller (``logging`` reports a failing handler on stderr instead).
"""

from __future__ import annotations

import logging
from typing import Any

from harmony_fleet.agent.logs.buffer import LogBuffer
from harmony_fleet.agent.logs.lines import level_of
from harmony_fleet.contracts.logs import SOURCE_AGENT

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
#: Carried by every line already (the agent's LoggerAdapter adds them to each record).
_IDENTITY = frozenset({"device_id", "instance_id", "agent_version", "role"})
_SKIP = _STANDARD | _IDENTITY


class ShippingHandler(logging.Handler):
    """Offer every record that reaches it to ``buffer`` as a line of source ``agent``."""

    def __init__(self, buffer: LogBuffer, *, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.buffer = buffer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                msg = f"{msg}\n{record.exc_text}"
            fields: dict[str, Any] | None = None
            for key, value in vars(record).items():
                if key in _SKIP or key.startswith("_"):
                    continue
                if fields is None:
                    fields = {}
                fields[key] = value
            self.buffer.offer(
                SOURCE_AGENT, record.created, level_of(record.levelno), record.name, msg, fields
            )
        except Exception:
            self.handleError(record)
