"""``fleet sim``: run N simulated devices against a real control plane (docs/sim.md)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from typing import Any

import click

from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import bad_flag, build_nats_options, nats_options
from harmony_fleet.cli.rollout import duration
from harmony_fleet.contracts import Share
from harmony_fleet.errors import InvalidMessage
from harmony_fleet.sim.config import Fault, SimConfig, parse_label
from harmony_fleet.sim.runner import run

log = logging.getLogger(__name__)


def _fault_share(flag: str, text: str) -> Share:
    try:
        return Share.parse(text)
    except InvalidMessage as exc:
        raise bad_flag(flag, exc.reason) from None


def _upgrade_time(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("..")
    first = duration("--upgrade-time", low)
    return (first, duration("--upgrade-time", high)) if sep else (first, first)


def _line(summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    ended = {k: v for k, v in counts.items() if k.split("/")[0] in _ENDS}
    versions = ", ".join(f"{v}: {n}" for v, n in summary["versions"].items())
    return (
        f"fleet sim: {summary['online']}/{summary['devices']} online, "
        f"{summary['upgrading']} upgrading, versions {{{versions}}}, "
        f"{counts.get('heartbeats', 0)} heartbeats, ended {ended or '{}'}"
    )


_ENDS = ("Succeeded", "RolledBack", "Failed")
#: How often the progress line is printed.
PROGRESS_S = 5.0


@click.command("sim")
@click.option("--devices", type=click.IntRange(1, 1_000_000), required=True)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes, one NATS connection each. [default: the cores, at most 8]",
)
@click.option("--id-prefix", default="sim-", show_default=True, help="Starts with sim-.")
@click.option("--agent-version", "version", default="1.0.0", show_default=True)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=V1:60%,V2:40%",
    help="A label every device reports, its values drawn by weight. Repeatable.",
)
@click.option("--fail-self-test", default="0", metavar="SHARE", help="e.g. 2% or 5 devices.")
@click.option("--silent", default="0", metavar="SHARE", help="Candidates that never heartbeat.")
@click.option("--crash-after-commit", default="0", metavar="SHARE")
@click.option("--offline", default="0", metavar="SHARE", help="Devices that stop heartbeating.")
@click.option("--slow-download", default="0", metavar="SHARE")
@click.option("--slow-factor", type=float, default=5.0, show_default=True)
@click.option(
    "--upgrade-time",
    default="10s",
    show_default=True,
    metavar="T|LOW..HIGH",
    help="Marker seen to candidate running (download + self-test); a range draws per device.",
)
@click.option("--heartbeat-interval", default="5s", show_default=True)
@click.option("--offline-after", default="0s", show_default=True)
@click.option("--offline-for", default=None, help="[default: until the simulation ends]")
@click.option("--cutover-timeout", default=None, help="Cap on the markers' cutover/hold bound.")
@click.option("--watch-window", default=None, help="Cap on the markers' post-commit watch.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--duration", "run_for", default=None, help="Stop after this long. [default: Ctrl-C]")
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON line at the end.")
@nats_options
def sim_cmd(
    devices: int,
    processes: int | None,
    id_prefix: str,
    version: str,
    labels: tuple[str, ...],
    fail_self_test: str,
    silent: str,
    crash_after_commit: str,
    offline: str,
    slow_download: str,
    slow_factor: float,
    upgrade_time: str,
    heartbeat_interval: str,
    offline_after: str,
    offline_for: str | None,
    cutover_timeout: str | None,
    watch_window: str | None,
    seed: int,
    run_for: str | None,
    as_json: bool,
    **nats_kwargs: Any,
) -> None:
    """Run simulated devices that speak the real protocol over real NATS (like kwok).

    Needs a sim credential (`fleet credentials issue --role sim --name sim-NAME`, issued only
    by `fleet server --dev`); device ids are sim-00000, sim-00001, ...
    """
    faults = {
        Fault.SELF_TEST: _fault_share("--fail-self-test", fail_self_test),
        Fault.SILENT: _fault_share("--silent", silent),
        Fault.CRASH_AFTER_COMMIT: _fault_share("--crash-after-commit", crash_after_commit),
        Fault.OFFLINE: _fault_share("--offline", offline),
        Fault.SLOW_DOWNLOAD: _fault_share("--slow-download", slow_download),
    }
    config = SimConfig(
        devices=devices,
        processes=processes or min(devices, os.cpu_count() or 1, 8),
        id_prefix=id_prefix,
        version=version,
        labels=tuple(parse_label(t) for t in labels),
        faults={f: s for f, s in faults.items() if s.of(devices) > 0},
        upgrade_time_s=_upgrade_time(upgrade_time),
        heartbeat_s=duration("--heartbeat-interval", heartbeat_interval),
        slow_factor=slow_factor,
        offline_after_s=duration("--offline-after", offline_after),
        offline_for_s=duration("--offline-for", offline_for) if offline_for else None,
        cutover_s=duration("--cutover-timeout", cutover_timeout) if cutover_timeout else None,
        watch_s=duration("--watch-window", watch_window) if watch_window else None,
        seed=seed,
    )
    options = build_nats_options(**nats_kwargs)
    last = [0.0]

    def progress(summary: dict[str, Any]) -> None:
        if time.monotonic() - last[0] >= PROGRESS_S:
            last[0] = time.monotonic()
            click.echo(_line(summary), err=True)

    click.echo(
        f"fleet sim: {config.devices} devices ({config.device_id(0)} ...) in "
        f"{config.processes} process(es); Ctrl-C stops",
        err=True,
    )
    stop = threading.Event()
    # SIGTERM (a service manager, a benchmark stopping us) ends the run as Ctrl-C does: the
    # workers stop, the summary is printed.
    signal.signal(signal.SIGTERM, lambda _n, _f: stop.set())
    summary = run(
        config,
        options,
        duration_s=duration("--duration", run_for) if run_for else None,
        progress=progress,
        stop=stop.is_set,
    )
    click.echo(_line(summary), err=True)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    if summary["errors"]:
        for error in summary["errors"][:5]:
            click.echo(f"fleet sim: {error}", err=True)
        raise SystemExit(exit_codes.FAILED)


def register(group: click.Group) -> None:
    group.add_command(sim_cmd)
