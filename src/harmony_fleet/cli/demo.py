"""``fleet demo``: the whole system on one machine, on the embedded default.

Starts an embedded nats-server in a temporary directory, the operator (in this process), and a
few agents as real processes, then shows the live device table. Everything it started is stopped
on exit, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.live import Live

from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import install_stop_signals, print_json, setup_logging
from harmony_fleet.cli.devices import devices_table
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.runtime import Operator, OperatorConfig


def start_agent(device: str, url: str, state_dir: Path, interval: float, log: Path) -> Any:
    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harmony_fleet",
                "agent",
                "run",
                "--device-id",
                device,
                "--nats",
                url,
                "--state-dir",
                str(state_dir),
                "--heartbeat-interval",
                str(interval),
                "--log-json",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        out.close()


async def _demo(
    devices: int, duration: float, interval: float, as_json: bool, workdir: Path
) -> int:
    server = EmbeddedNats(store_dir=workdir / "nats", log_file=workdir / "nats.log")
    url = server.start()
    agents: list[Any] = []
    operator = Operator(
        OperatorConfig(
            nats=NatsOptions(servers=(url,)),
            presence=PresencePolicy(refresh_s=max(interval, 1.0)),
            flush_interval_s=0.2,
        )
    )
    install_stop_signals(operator.stop)
    op_task = asyncio.ensure_future(operator.run())
    console = Console(stderr=as_json)
    try:
        await asyncio.wait_for(operator.ready.wait(), 15)
        for i in range(devices):
            name = f"demo-{i + 1:02d}"
            agents.append(start_agent(name, url, workdir / name, interval, workdir / f"{name}.log"))
        deadline = time.monotonic() + duration
        with Live(console=console, refresh_per_second=4, transient=as_json) as live:
            while time.monotonic() < deadline and not operator.stop.is_set():
                records = [s.record(time.time()) for s in operator.registry.devices.values()]
                live.update(devices_table(sorted(records, key=lambda r: r.device_id), time.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(operator.stop.wait(), 0.25)
        records = [s.record(time.time()) for s in operator.registry.devices.values()]
        online = sum(r.online for r in records)
        if as_json:
            print_json(
                {
                    "devices": msgspec.to_builtins(records),
                    "online": online,
                    "heartbeats_ingested": operator.registry.ingested,
                }
            )
        else:
            console.print(
                f"{online}/{devices} devices online; "
                f"{operator.registry.ingested} heartbeats ingested"
            )
        return exit_codes.OK if online == devices else exit_codes.FAILED
    finally:
        for proc in agents:
            proc.terminate()
        for proc in agents:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        operator.stop.set()
        with contextlib.suppress(Exception):
            await op_task
        server.stop()


@click.command("demo")
@click.option("--devices", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--duration", type=click.FloatRange(1, 3600), default=12.0, show_default=True)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON summary line.")
def demo_cmd(devices: int, duration: float, heartbeat_interval: float, as_json: bool) -> None:
    """Run NATS, the operator and a few agents locally and show the live device table."""
    setup_logging(False, "WARNING", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp:
        code = asyncio.run(_demo(devices, duration, heartbeat_interval, as_json, Path(tmp)))
    raise SystemExit(code)


def register(group: click.Group) -> None:
    group.add_command(demo_cmd)
