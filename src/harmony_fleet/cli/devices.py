"""``fleet devices`` and ``fleet ping``: look at the fleet from a terminal or a script."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from harmony_fleet.adapters.nats.commands import CommandsClient
from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Undecodable
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import build_nats_options, nats_options, print_json
from harmony_fleet.contracts import DeviceRecord, device_id
from harmony_fleet.core.upgrade.requests import describe
from harmony_fleet.errors import NotFound


async def load_devices(options: NatsOptions) -> tuple[list[DeviceRecord], int]:
    """Every device record in the registry, sorted by id, and how many records were unreadable."""
    nc = await connect(options.with_name("fleet-cli"))
    try:
        try:
            kv = await FleetKV(nc).devices()
        except NotFound:
            return [], 0
        records, bad = [], 0
        for item in await kv.snapshot():
            if isinstance(item, Undecodable):
                bad += 1
            else:
                records.append(item.value)
        return sorted(records, key=lambda r: r.device_id), bad
    finally:
        await nc.close()


def _ago(ts: float, now: float) -> str:
    delta = max(0.0, now - ts)
    if delta < 90:
        return f"{delta:.0f}s ago"
    if delta < 5400:
        return f"{delta / 60:.0f}m ago"
    return f"{delta / 3600:.1f}h ago"


def devices_table(records: list[DeviceRecord], now: float) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("DEVICE", "VERSION", "ONLINE", "LAST SEEN", "INSTANCES", "UPGRADE"):
        table.add_column(column)
    for r in records:
        upgrade = ""
        if r.upgrade is not None:
            upgrade = f"{r.upgrade.phase.value} -> {r.upgrade.target_version}"
            detail = describe(r.upgrade, now) or r.upgrade.message
            if detail:
                upgrade += f" ({detail})"
        table.add_row(
            r.device_id,
            r.current_version,
            "[green]yes[/]" if r.online else "[red]no[/]",
            _ago(r.last_seen, now),
            str(len(r.instances)),
            upgrade,
        )
    return table


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of device records.")
@nats_options
def devices_cmd(as_json: bool, **nats_kwargs: Any) -> None:
    """List the devices in the registry."""
    records, bad = asyncio.run(load_devices(build_nats_options(**nats_kwargs)))
    if as_json:
        print_json(msgspec.to_builtins(records))
    elif not records:
        click.echo("no devices registered yet (is `fleet operator` running?)")
    else:
        Console().print(devices_table(records, time.time()))
    if bad:
        click.echo(f"fleet: warning: {bad} unreadable registry record(s) skipped", err=True)


@click.command("ping")
@click.argument("device")
@click.option("--timeout", type=click.FloatRange(0.1, 300), default=5.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@nats_options
def ping_cmd(device: str, timeout: float, as_json: bool, **nats_kwargs: Any) -> None:
    """Ask DEVICE's agent to answer; print its version and round-trip time."""
    dev = device_id(device)

    async def go() -> tuple[Any, float]:
        nc = await connect(build_nats_options(**nats_kwargs).with_name("fleet-cli"))
        try:
            start = time.perf_counter()
            reply = await CommandsClient(nc).ping(dev, timeout_s=timeout)
            return reply, time.perf_counter() - start
        finally:
            await nc.close()

    reply, rtt = asyncio.run(go())
    if as_json:
        print_json({**msgspec.to_builtins(reply), "rtt_ms": round(rtt * 1000, 3)})
    else:
        click.echo(
            f"{dev}: {reply.code.value} from instance {reply.instance_id} "
            f"version {reply.agent_version} in {rtt * 1000:.1f} ms"
        )
    if not reply.ok:
        raise SystemExit(exit_codes.REFUSED)


def register(group: click.Group) -> None:
    group.add_command(devices_cmd)
    group.add_command(ping_cmd)
