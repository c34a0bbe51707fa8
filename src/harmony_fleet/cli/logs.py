"""``fleet logs DEVICE``: a device's log lines from the ``FLEET_LOGS`` stream, history and live.

History comes from JetStream, so it is there while the device is offline, and after a failed
upgrade the candidate's last lines can be read with ``--instance <candidate_instance_id>`` (the id
``fleet upgrade-status`` shows). The ``fleet agent run`` flags that turn shipping on are the
agent entry's (``agent.main``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sys
import time
from collections import deque
from typing import Any

import click
import msgspec

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.logstream import (
    EndOfHistory,
    LogFeed,
    Received,
    Skipped,
)
from harmony_fleet.cli._common import build_nats_options, install_stop_signals, nats_options
from harmony_fleet.contracts import LogLine, device_id
from harmony_fleet.contracts import logs as log_contract
from harmony_fleet.errors import InvalidMessage, NotFound

#: Malformed messages reported one by one before only counting them.
_SKIPS_SHOWN = 5
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_INSTANCE_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")


# -- parsing ---------------------------------------------------------------------------------------
def parse_since(value: str, *, now: float | None = None) -> float:
    """``10m``, ``1h30m``, ``2d`` (ago), an ISO 8601 time (local if no zone), or Unix seconds."""
    text = value.strip()
    now = time.time() if now is None else now
    if text and _DURATION_PART.sub("", text) == "":
        return now - sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (30s, 10m, 2h, 1d) nor a timestamp "
            "(2024-05-01T12:00:00, 2024-05-01 12:00Z, or Unix seconds)",
            param_hint="--since",
        ) from None
    return when.timestamp()  # naive times are local, as a person typing one expects


def _instance(value: str | None) -> str | None:
    if value is None:
        return None
    prefix = value.strip().lower()
    if not _INSTANCE_PREFIX.match(prefix):
        raise click.BadParameter(
            f"{value!r} is not an instance id (32 hex digits, or at least the first 4)",
            param_hint="--instance",
        )
    return prefix


# -- output ----------------------------------------------------------------------------------------
def render(line: LogLine) -> str:
    """One line for a person: local time, source, role/instance, level, logger, msg, fields."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(line.ts))
    millis = int((line.ts % 1) * 1000)
    text = (
        f"{stamp}.{millis:03d} {line.source} {line.role.value}/{line.instance_id[:8]} "
        f"{line.level.value:<8} {line.logger}: {line.msg}"
    )
    if line.fields:
        text += " " + " ".join(f"{k}={v}" for k, v in line.fields.items())
    if line.truncated:
        text += " [truncated]"
    return text


class _Printer:
    """Filters and prints lines; counts what it printed and what it skipped."""

    def __init__(self, *, as_json: bool, instance: str | None, grep: re.Pattern[str] | None):
        self.as_json = as_json
        self.instance = instance
        self.grep = grep
        self.printed = 0
        self.skipped = 0

    def wanted(self, line: LogLine) -> bool:
        if self.instance and not line.instance_id.startswith(self.instance):
            return False
        return not (self.grep and not self.grep.search(line.msg))

    def emit(self, line: LogLine) -> None:
        out = msgspec.json.encode(line).decode() if self.as_json else render(line)
        sys.stdout.write(out + "\n")
        self.printed += 1

    def skip(self, event: Skipped) -> None:
        self.skipped += 1
        if self.skipped <= _SKIPS_SHOWN:
            click.echo(
                f"fleet: skipped malformed log message on {event.subject} "
                f"(stream seq {event.stream_seq}): {event.reason}",
                err=True,
            )

    def summary(self) -> None:
        sys.stdout.flush()
        if self.skipped:
            click.echo(f"fleet: skipped {self.skipped} malformed log message(s) in all", err=True)


# -- the command -----------------------------------------------------------------------------------
@click.command("logs")
@click.argument("device")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they arrive.")
@click.option("--since", metavar="DURATION|TIMESTAMP", help="Lines stored since then (10m, ISO).")
@click.option("--source", metavar="SOURCE", help="agent, unit.NAME, or a unit (nginx.service).")
@click.option("--instance", metavar="ID", help="One agent instance only (a candidate's id).")
@click.option("--grep", metavar="REGEX", help="Only lines whose message matches.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (a LogLine) per line.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0),
    default=None,
    help="History lines to show (after filters). [default: 100; all with --since]",
)
@nats_options
def logs_cmd(
    device: str,
    follow: bool,
    since: str | None,
    source: str | None,
    instance: str | None,
    grep: str | None,
    as_json: bool,
    lines: int | None,
    **nats_kwargs: Any,
) -> None:
    """Show DEVICE's log lines (history from the log stream; --follow for live ones)."""
    dev = device_id(device)
    try:
        src = log_contract.source(source) if source else None
    except InvalidMessage as exc:
        raise click.BadParameter(exc.reason, param_hint="--source") from None
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise click.BadParameter(f"{grep!r}: {exc}", param_hint="--grep") from None
    printer = _Printer(as_json=as_json, instance=_instance(instance), grep=pattern)
    since_ts = parse_since(since) if since else None
    keep = lines if lines is not None else (None if since_ts is not None else 100)
    options = build_nats_options(**nats_kwargs)

    async def go() -> None:
        nc = await connect(options.with_name("fleet-logs"))
        try:
            stop = asyncio.Event()
            install_stop_signals(stop)
            reader = asyncio.ensure_future(
                _read(nc, dev, src, since_ts, printer, keep=keep, follow=follow)
            )
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            else:
                reader.result()
        finally:
            printer.summary()
            with contextlib.suppress(Exception):
                await nc.close()

    asyncio.run(go())
    if printer.printed == 0 and not follow:
        raise NotFound(f"no log lines for {dev}{_described(src, since, instance, grep)}")


def _described(src: str | None, since: str | None, instance: str | None, grep: str | None) -> str:
    parts = [
        f"{name} {value}"
        for name, value in (
            ("source", src),
            ("since", since),
            ("instance", instance),
            ("matching", grep),
        )
        if value
    ]
    return f" ({', '.join(parts)})" if parts else ""


async def _read(
    nc: NatsClient,
    dev: str,
    src: str | None,
    since: float | None,
    printer: _Printer,
    *,
    keep: int | None,
    follow: bool,
) -> None:
    history: deque[LogLine] = deque(maxlen=keep)
    live = False
    async with LogFeed(nc, dev, source=src, since=since) as feed:
        async for event in feed.events(follow=follow):
            if isinstance(event, Skipped):
                printer.skip(event)
            elif isinstance(event, Received):
                if not printer.wanted(event.line):
                    continue
                if live:
                    printer.emit(event.line)
                    sys.stdout.flush()
                else:
                    history.append(event.line)
            elif isinstance(event, EndOfHistory):
                live = True
                for line in history:
                    printer.emit(line)
                sys.stdout.flush()
                if follow and not history:
                    click.echo(f"fleet: no log lines for {dev} yet; following", err=True)


def register(group: click.Group) -> None:
    group.add_command(logs_cmd)
