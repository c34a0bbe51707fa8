"""Following a systemd unit's journal: ``journalctl --follow -o json -u UNIT`` as a subprocess.

A subprocess, not a binding to libsystemd: nothing to compile on the device, and the agent runs
wherever Python does. Where ``journalctl`` is absent (a container, a non-systemd board) the
reader says so once and stops; the agent carries on.

Each output line is one JSON object. Input is not trusted: a line that is not JSON, not an
object, without a usable ``MESSAGE``, or longer than :data:`MAX_JOURNAL_LINE` is skipped and
counted as ``malformed``. ``MESSAGE`` may be an array of bytes (journald's form for binary
data): it is decoded as UTF-8 with replacement. ``--lines=0`` starts at the end of the journal,
so a restarted agent does not ship the same lines twice (what happened while no agent ran is in
the device's journal, not in the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from harmony_fleet.agent.logs.buffer import DropReason, LogBuffer
from harmony_fleet.contracts import LogLevel
from harmony_fleet.contracts.logs import unit_source

log = logging.getLogger("harmony_fleet.agent.logs")

#: Longest journal line read; longer ones are skipped (the message would be cut anyway).
MAX_JOURNAL_LINE = 64 * 1024

_PRIORITY = {
    "0": LogLevel.CRITICAL,
    "1": LogLevel.CRITICAL,
    "2": LogLevel.CRITICAL,
    "3": LogLevel.ERROR,
    "4": LogLevel.WARNING,
    "5": LogLevel.INFO,
    "6": LogLevel.INFO,
    "7": LogLevel.DEBUG,
}
_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class JournalEntry:
    ts: float
    level: LogLevel
    logger: str
    msg: str
    fields: dict[str, Any]


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None


def parse_entry(raw: bytes, unit: str) -> JournalEntry | None:
    """One ``journalctl -o json`` line, or None when it is not a usable journal entry."""
    try:
        obj = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    msg = _text(obj.get("MESSAGE"))
    if msg is None:
        return None
    try:
        ts = int(obj.get("__REALTIME_TIMESTAMP", "")) / 1e6
    except (TypeError, ValueError):
        ts = time.time()
    level = _PRIORITY.get(str(obj.get("PRIORITY", "6")), LogLevel.INFO)
    ident = _text(obj.get("SYSLOG_IDENTIFIER")) or ""
    fields: dict[str, Any] = {"unit": _text(obj.get("_SYSTEMD_UNIT")) or unit}
    pid = obj.get("_PID")
    if isinstance(pid, str) and pid.isdigit():
        fields["pid"] = int(pid)
    return JournalEntry(ts, level, ident or unit, msg, fields)


class JournalReader:
    """Feed one unit's journal into ``buffer`` until cancelled; restart journalctl if it exits."""

    def __init__(
        self,
        unit: str,
        buffer: LogBuffer,
        *,
        journalctl: str = "journalctl",
        restart_s: float = 5.0,
    ) -> None:
        self.unit = unit
        self.source = unit_source(unit)
        self.buffer = buffer
        self.journalctl = journalctl
        self.restart_s = restart_s
        self.lines = 0
        self.malformed = 0

    def argv(self, binary: str) -> list[str]:
        return [binary, "--follow", "--output=json", "--lines=0", "--unit", self.unit]

    async def run(self) -> None:
        binary = shutil.which(self.journalctl)
        if binary is None:
            log.warning(
                "journalctl not found: not shipping this unit's journal",
                extra={"unit": self.unit, "journalctl": self.journalctl},
            )
            return
        while True:
            code = await self._follow_once(binary)
            log.warning(
                "journalctl exited; restarting",
                extra={"unit": self.unit, "exit_code": code, "after_s": self.restart_s},
            )
            await asyncio.sleep(self.restart_s)

    async def _follow_once(self, binary: str) -> int | None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv(binary),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                limit=MAX_JOURNAL_LINE,
            )
        except OSError as exc:
            log.warning("cannot start journalctl", extra={"unit": self.unit, "error": str(exc)})
            return None
        assert proc.stdout is not None
        rest_of_long_line = False
        try:
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError as exc:  # over the limit: asyncio dropped it, or its start
                    self._malformed()
                    rest_of_long_line = "not found" in str(exc)
                    continue
                if not raw:
                    break
                if rest_of_long_line:  # the tail of a line already counted
                    rest_of_long_line = False
                    continue
                if raw.strip():
                    self.feed(raw)
            return await proc.wait()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 2.0)

    def feed(self, raw: bytes) -> None:
        """Parse one journal line and offer it (or count it as malformed)."""
        entry = parse_entry(raw, self.unit)
        if entry is None:
            self._malformed()
            return
        self.lines += 1
        self.buffer.offer(self.source, entry.ts, entry.level, entry.logger, entry.msg, entry.fields)

    def _malformed(self) -> None:
        self.malformed += 1
        self.buffer.count(DropReason.MALFORMED)
