"""Helpers for the log streaming tests: a stand-in journalctl, reading the stream, heartbeats."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import fleet_cmd

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.logstream import LogFeed, Received, Skipped
from harmony_fleet.contracts import HEARTBEAT, Heartbeat, LogLine, subjects

#: A real executable that speaks `journalctl --follow -o json` for the unit it is asked about:
#: ``ticker.service`` writes a line every 50 ms (and its count to $FAKE_JOURNAL_TICKS, if set);
#: ``flood.service`` writes bad lines, one
#: oversized message, then FLOOD lines at once. It exits when its parent (the agent) is gone.
FAKE_JOURNALCTL = r"""#!{python}
import json, os, sys, time
unit = sys.argv[sys.argv.index("--unit") + 1]
parent = os.getppid()

def entry(msg, prio="6"):
    return json.dumps({{
        "__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)), "PRIORITY": prio,
        "MESSAGE": msg, "_SYSTEMD_UNIT": unit, "SYSLOG_IDENTIFIER": "demo", "_PID": "42",
    }})

def out(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

if unit == "ticker.service":
    i = 0
    counter = os.environ.get("FAKE_JOURNAL_TICKS")
    while os.getppid() == parent:
        out(entry(f"tick {{i}}"))
        if counter:
            with open(counter + ".tmp", "w") as f:
                f.write(str(i))
            os.replace(counter + ".tmp", counter)
        i += 1
        time.sleep(0.05)
elif unit == "flood.service":
    out("this is not json")
    out("[1, 2, 3]")
    out(json.dumps({{"PRIORITY": "3"}}))
    out(entry("y" * (70 * 1024)))
    out(entry("x" * 20000, prio="3"))
    sys.stdout.write("".join(entry(f"flood {{i}}") + "\n" for i in range({flood})))
    sys.stdout.flush()
while os.getppid() == parent:
    time.sleep(0.2)
"""


def ticks(path: Path) -> int:
    """How many lines the ticker has written so far (-1 before the first)."""
    try:
        return int(path.read_text() or -1)
    except (FileNotFoundError, ValueError):
        return -1


def fake_journalctl(tmp: Path, *, flood: int = 2000) -> Path:
    path = tmp / "journalctl"
    path.write_text(FAKE_JOURNALCTL.format(python=sys.executable, flood=flood))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def stored(
    nc: NatsClient, device: str, *, source: str | None = None
) -> tuple[list[LogLine], list[Skipped]]:
    """Every line (and every undecodable message) the stream holds for ``device`` now."""
    lines: list[LogLine] = []
    skipped: list[Skipped] = []
    async with LogFeed(nc, device, source=source) as feed:
        async for event in feed.events(follow=False, idle_s=2.0):
            if isinstance(event, Received):
                lines.append(event.line)
            elif isinstance(event, Skipped):
                skipped.append(event)
    return lines, skipped


def drop_reports(lines: list[LogLine]) -> list[LogLine]:
    return [line for line in lines if line.msg == "logs.dropped"]


class Beats:
    """Collects a device's heartbeats (to learn instance ids and see beats resume)."""

    def __init__(self) -> None:
        self.seen: list[Heartbeat] = []

    async def start(self, nc: NatsClient, device: str) -> None:
        async def on_msg(msg: Any) -> None:
            self.seen.append(HEARTBEAT.decode(msg.data))

        await nc.subscribe(subjects.heartbeat(device), cb=on_msg)
        await nc.flush()

    def instance(self, role: str) -> str | None:
        for hb in self.seen:
            if hb.role.value == role:
                return hb.instance_id
        return None


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_exit(proc: Any, timeout: float = 10.0) -> int:
    return int(await asyncio.to_thread(proc.wait, timeout))


def start_fleet(out: Path, *args: str) -> subprocess.Popen[bytes]:
    """``fleet ARGS`` as a background process, stdout to ``out``, stderr kept for the test."""
    with out.open("wb") as sink:
        return subprocess.Popen(fleet_cmd(*args), stdout=sink, stderr=subprocess.PIPE)
