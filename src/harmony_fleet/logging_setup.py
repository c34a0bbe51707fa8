"""Structured logging for every process: one line per event, text for people, JSON for journald.

Fields go in ``extra={...}``; the JSON formatter puts them at the top level of the line, the text
formatter appends them as ``key=value``. Nothing here is global until :func:`configure` is
called by a process's entry point.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger: msg key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extra:
            line = f"{line} {extra}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class FieldsAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A LoggerAdapter whose fixed fields *merge* with each call's ``extra``.

    The standard adapter replaces a call's ``extra`` with its own on Python < 3.13, so the
    per-call fields (``error=...``, ``exit_code=...``) would silently vanish.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def configure(
    *, json_lines: bool = False, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Send harmony_fleet's logs to ``stream`` (stdout by default, for journald)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # nats-py logs every reconnect attempt at ERROR; ours already says what matters.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
