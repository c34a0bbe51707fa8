"""``fleet rollout``: create, list, show, pause, resume, abort and undo fleet rollouts.

A rollout is a value in the ``fleet_rollouts`` bucket; the operator drives it (``RolloutLoop``,
docs/rollouts.md). These commands only write what a person asked for: the spec at creation,
then its levers, each with compare-and-set so that two people pressing at once never lose a
press silently.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import (
    ROLLOUT_PROGRESS,
    ROLLOUT_STATUSES,
    ROLLOUTS,
    FleetKV,
)
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import bad_flag, build_nats_options, nats_options, print_json
from harmony_fleet.cli.request import who
from harmony_fleet.contracts import (
    DeviceProgress,
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
    UpgradeTimeouts,
    version,
)
from harmony_fleet.contracts.rollout import (
    CREATED_BY_KUBERNETES,
    FAILURE_STATES,
    FINAL_STATES,
    MAX_DURATION_S,
    rollout_name,
)
from harmony_fleet.core.rollout import parse_window
from harmony_fleet.errors import Conflict, InvalidMessage, NotFound, Refused

log = logging.getLogger(__name__)
T = TypeVar("T")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def duration(flag: str, text: str) -> float:
    """``90s``, ``10m``, ``1h30m``, ``7d`` or plain seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        if not value or _PART.sub("", value):
            raise bad_flag(flag, f"{text!r} is not a duration like 30s, 10m, 2h, 7d") from None
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if not 0 <= seconds <= MAX_DURATION_S:
        raise bad_flag(flag, f"{text!r} is outside 0 s to 30 days")
    return seconds


def _share(flag: str, text: str) -> Share:
    try:
        return Share.parse(text)
    except InvalidMessage as exc:
        raise bad_flag(flag, exc.reason) from None


def _run(nats_kwargs: dict[str, Any], work: Callable[[FleetKV], Awaitable[T]]) -> T:
    options = build_nats_options(**nats_kwargs)

    async def go() -> T:
        nc: NatsClient = await connect(options.with_name("fleet-cli"))
        try:
            return await work(FleetKV(nc))
        finally:
            await nc.close()

    return asyncio.run(go())


@click.group("rollout")
def rollout_group() -> None:
    """Roll a version out to the fleet: canaries, waves, automatic halt, undo (docs/rollouts.md)."""


@rollout_group.command("create")
@click.argument("name")
@click.option("--version", "ver", required=True, help="The agent version to roll out.")
@click.option("--selector", multiple=True, help="label=value a device must carry (repeatable).")
@click.option("--canary", default="5", show_default=True, help="Canaries: a count or N%.")
@click.option("--max-in-flight", default="10%", show_default=True, help="Wave size: count or N%.")
@click.option("--max-downloads", type=click.IntRange(1), default=None, help="Downloads at once.")
@click.option("--spread", default="30s", show_default=True, help="A wave's starts spread over.")
@click.option("--soak", default="10m", show_default=True, help="Wait after the canaries.")
@click.option("--halt-failure-rate", default="10%", show_default=True, help="Halt above this.")
@click.option("--window", multiple=True, help="'Mon-Fri 02:00-05:00 Europe/Paris' (repeatable).")
@click.option("--deadline", default=None, help="Skip devices not started after this (7d).")
@click.option(
    "--watch-window",
    default="10m",
    show_default=True,
    help="Each device's post-commit watch: it counts as succeeded only after it.",
)
@click.option("--json", "as_json", is_flag=True)
@nats_options
def create_cmd(
    name: str,
    ver: str,
    selector: tuple[str, ...],
    canary: str,
    max_in_flight: str,
    max_downloads: int | None,
    spread: str,
    soak: str,
    halt_failure_rate: str,
    window: tuple[str, ...],
    deadline: str | None,
    watch_window: str,
    as_json: bool,
    **nats_kwargs: Any,
) -> None:
    """Create rollout NAME of --version; the operator starts it at once."""
    labels = {}
    for item in selector:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise bad_flag("--selector", f"{item!r} is not label=value")
        labels[key] = value
    rate = _share("--halt-failure-rate", halt_failure_rate)
    if rate.percent is None:
        raise bad_flag("--halt-failure-rate", f"{halt_failure_rate!r} is not a percent like 10%")
    try:
        windows = [parse_window(w) for w in window]
    except InvalidMessage as exc:
        raise bad_flag("--window", exc.reason) from None
    now = time.time()
    fields: dict[str, Any] = {
        "name": rollout_name(name),
        "version": version(ver),
        "selector": labels,
        "canary": _share("--canary", canary),
        "max_in_flight": _share("--max-in-flight", max_in_flight),
        "max_downloads": max_downloads,
        "spread_s": duration("--spread", spread),
        "soak_s": duration("--soak", soak),
        "halt_failure_rate": rate.percent,
        "windows": windows,
        "deadline": now + duration("--deadline", deadline) if deadline else None,
        "timeouts": UpgradeTimeouts(watch_s=duration("--watch-window", watch_window)),
        "created_by": who(),
        "created_at": now,
    }
    try:
        spec = msgspec.convert(fields, Rollout, from_attributes=True)
    except msgspec.ValidationError as exc:
        raise bad_flag("rollout", str(exc)) from None

    async def work(kv: FleetKV) -> None:
        try:
            await (await kv.open(ROLLOUTS)).create(spec.name, spec)
        except Conflict:
            raise Refused(
                f"rollout {spec.name} exists; pick another name", code="rollout_exists"
            ) from None

    _run(nats_kwargs, work)
    if as_json:
        print_json(msgspec.to_builtins(spec))
    else:
        click.echo(f"rollout {spec.name}: {spec.version} created")


def _lever(verb: str, **changes: bool) -> click.Command:
    @click.command(verb)
    @click.argument("name")
    @nats_options
    def command(name: str, **nats_kwargs: Any) -> None:
        async def work(kv: FleetKV) -> None:
            specs = await kv.open(ROLLOUTS)
            for _ in range(3):
                entry = await specs.get(rollout_name(name))
                if entry is None:
                    raise NotFound(f"no rollout {name!r}")
                source = entry.value.created_by
                if source.startswith(CREATED_BY_KUBERNETES):
                    raise Refused(
                        f"rollout {name} is driven by the Rollout resource "
                        f"{source.removeprefix(CREATED_BY_KUBERNETES)}: change its spec "
                        "(paused, undo) or delete it (abort) with kubectl",
                        code="rollout_from_kubernetes",
                    )
                try:
                    new = msgspec.structs.replace(entry.value, **changes)
                    await specs.update(name, new, last=entry.revision)
                    return
                except Conflict:
                    continue
            raise Conflict(f"rollout {name} is being changed by someone else; try again")

        _run(nats_kwargs, work)
        click.echo(f"rollout {name}: {verb} asked; the operator acts on its next pass")

    command.help = f"Ask the operator to {verb} rollout NAME."
    return command


async def _load(kv: FleetKV, name: str | None) -> list[dict[str, Any]]:
    specs = [
        e.value
        for e in await (await kv.open(ROLLOUTS)).snapshot()
        if isinstance(e, Entry) and (name is None or e.key == name)
    ]
    statuses = {
        e.key: e.value
        for e in await (await kv.open(ROLLOUT_STATUSES)).snapshot()
        if isinstance(e, Entry)
    }
    devices: list[DeviceProgress] = []
    if name is not None:
        devices = [
            e.value
            for e in await (await kv.open(ROLLOUT_PROGRESS)).snapshot()
            if isinstance(e, Entry) and e.value.rollout == name
        ]
    return [
        {
            "rollout": spec,
            "status": statuses.get(spec.name) or RolloutStatus(name=spec.name),
            "devices": sorted(devices, key=lambda d: d.device_id),
        }
        for spec in sorted(specs, key=lambda s: s.name)
    ]


def _counts(status: RolloutStatus, *, undo: bool = False) -> str:
    counts = status.undo_counts if undo else status.counts
    return ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items())) or "-"


@rollout_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@nats_options
def list_cmd(as_json: bool, **nats_kwargs: Any) -> None:
    """Every rollout, its phase and its counts."""
    rows = _run(nats_kwargs, lambda kv: _load(kv, None))
    if as_json:
        print_json(
            msgspec.to_builtins([{k: v for k, v in r.items() if k != "devices"} for r in rows])
        )
        return
    if not rows:
        click.echo("no rollouts yet")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "VERSION", "PHASE", "WAVE", "DEVICES"):
        table.add_column(col)
    for r in rows:
        status = r["status"]
        table.add_row(
            r["rollout"].name,
            r["rollout"].version,
            status.phase.value,
            str(status.wave),
            _counts(status),
        )
    Console().print(table)


@rollout_group.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="Follow it: waves and counts until it ends.")
@click.option("--every", type=click.FloatRange(0.1, 60), default=1.0, hidden=True)
@nats_options
def status_cmd(name: str, as_json: bool, watch: bool, every: float, **nats_kwargs: Any) -> None:
    """Rollout NAME: phase, counts, why it halted, and every device not simply succeeded.

    With --watch: a progress bar per wave until the rollout is done, halted, aborted or undone,
    then the same summary; exit 0 when it ended Done or Undone, 1 when Halted or Aborted.
    """
    name = rollout_name(name)
    if watch:
        row = _run(nats_kwargs, lambda kv: watch_rollout(kv, name, every_s=every))
    else:
        rows = _run(nats_kwargs, lambda kv: _load(kv, name))
        if not rows:
            raise NotFound(f"no rollout {name!r}")
        row = rows[0]
    if as_json:
        print_json(msgspec.to_builtins(row))
    else:
        _summary(row)
    if watch and row["status"].phase in (RolloutPhase.HALTED, RolloutPhase.ABORTED):
        raise SystemExit(exit_codes.FAILED)


def _summary(row: dict[str, Any]) -> None:
    spec, status = row["rollout"], row["status"]
    click.echo(f"rollout {spec.name}: {spec.version}, {status.phase.value}, wave {status.wave}")
    click.echo(f"devices: {_counts(status)}")
    if spec.undo_requested:
        click.echo(f"undo: {_counts(status, undo=True)}")
    if status.halt_reason:
        click.echo(f"halted: {status.halt_reason}")
        for d in status.halted_devices:
            click.echo(f"  {d.device_id}: {d.state.value} {d.reason}")
    for d in row["devices"]:
        if d.reason or d.undo is not None:
            undo = f" (undo {d.undo.value} {d.undo_reason})" if d.undo is not None else ""
            click.echo(f"  {d.device_id}: {d.state.value} {d.reason}{undo}".rstrip())


_ENDS = (RolloutPhase.DONE, RolloutPhase.HALTED, RolloutPhase.ABORTED, RolloutPhase.UNDONE)


def _waves(row: dict[str, Any]) -> Table:
    """One progress bar per wave (0: the canaries), one for the undo once asked, and the
    counts per device state."""
    table = Table(box=None, header_style="bold")
    for col in ("WAVE", "PROGRESS", "DONE", "FAILED", "IN PROGRESS"):
        table.add_column(col)
    waves: dict[int, list[DeviceProgress]] = {}
    for d in row["devices"]:
        if d.wave is not None:
            waves.setdefault(d.wave, []).append(d)
    for wave, members in sorted(waves.items()):
        final = sum(1 for d in members if d.state in FINAL_STATES)
        failed = sum(1 for d in members if d.state in FAILURE_STATES)
        busy = sum(1 for d in members if d.state is DeviceState.IN_PROGRESS)
        bar = ProgressBar(total=len(members), completed=final, width=30)
        label = "canary" if wave == 0 else str(wave)
        table.add_row(label, bar, f"{final}/{len(members)}", str(failed), str(busy))
    undoing = [d.undo for d in row["devices"] if d.undo is not None]
    if undoing:
        final = sum(1 for u in undoing if u in FINAL_STATES)
        failed = sum(1 for u in undoing if u in FAILURE_STATES)
        busy = sum(1 for u in undoing if u is DeviceState.IN_PROGRESS)
        bar = ProgressBar(total=len(undoing), completed=final, width=30)
        table.add_row("undo", bar, f"{final}/{len(undoing)}", str(failed), str(busy))
    status = row["status"]
    table.caption = f"{row['rollout'].name}: {status.phase.value}; devices: {_counts(status)}"
    if row["rollout"].undo_requested:
        table.caption += f"; undo: {_counts(status, undo=True)}"
    return table


async def watch_rollout(kv: FleetKV, name: str, *, every_s: float) -> dict[str, Any]:
    """Show the rollout's waves live until it ends; its last state."""
    rows = await _load(kv, name)
    if not rows:
        raise NotFound(f"no rollout {name!r}")
    row = rows[0]
    console = Console(stderr=True)
    with Live(_waves(row), console=console, auto_refresh=False) as live:
        while row["status"].phase not in _ENDS:
            await asyncio.sleep(every_s)  # a display refresh, not a wait for a condition
            rows = await _load(kv, name)
            row = rows[0] if rows else row
            live.update(_waves(row), refresh=True)
    return row


for _verb, _changes in (
    ("pause", {"paused": True}),
    ("resume", {"paused": False}),
    ("abort", {"aborted": True}),
    ("undo", {"undo_requested": True}),
):
    rollout_group.add_command(_lever(_verb, **_changes))


def register(group: click.Group) -> None:
    group.add_command(rollout_group)
