"""A ``logging.Handler`` that feeds the agent's own log lines to the shipper without blocking.

``emit`` runs inside whatever code logs (the event loop, a download worker thread): it asks the
:class:`LogBuffer` for a sequence number (refused, and counted, over the rate limit: then nothing
is formatted), formats the message, picks the structured fields and appends the line to the
bounded ``deque``. It never touches NATS, never awaits, and
never raises into the caller (``logging`` reports a failing handler on stderr instead).
"""

from __future__ import annotations

import logging
from typing import Any

from harmony_fleet.agent.logs.buffer import LogBuffer
from harmony_fleet.agent.logs.lines import Pending, level_of
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
            seq = self.buffer.admit(SOURCE_AGENT)
            if seq is None:
                return  # over the rate limit: counted, and not worth formatting
            msg = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                msg = f"{msg}\n{record.exc_text}"
            attrs = record.__dict__
            fields: dict[str, Any] | None = None
            if attrs.keys() - _SKIP:  # a set difference in C; most records have no extras
                fields = {k: v for k, v in attrs.items() if k not in _SKIP and k[0] != "_"}
            self.buffer.put(
                Pending(
                    SOURCE_AGENT,
                    seq,
                    record.created,
                    level_of(record.levelno),
                    record.name,
                    msg,
                    fields,
                )
            )
        except Exception:
            self.handleError(record)
