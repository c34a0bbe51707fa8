"""``fleet operator``: run the control plane's operator in the foreground."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import click

from harmony_fleet.cli._common import (
    build_nats_options,
    install_stop_signals,
    log_options,
    nats_options,
    setup_logging,
)
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.runtime import Operator, OperatorConfig


@click.command("operator")
@click.option(
    "--offline-after",
    "missed",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Missed heartbeat intervals before a device is shown offline.",
)
@click.option(
    "--refresh",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds between writes of an unchanged device record (bounds last_seen staleness).",
)
@click.option(
    "--kv-replicas",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Replicas of the KV buckets the operator creates (3 on a 3-node cluster).",
)
@nats_options
@log_options
def operator_cmd(
    missed: int,
    refresh: float,
    kv_replicas: int,
    log_json: bool,
    log_level: str,
    **nats_kwargs: Any,
) -> None:
    """Ingest heartbeats, keep the device registry, coordinate upgrades."""
    setup_logging(log_json, log_level)
    nats = build_nats_options(**nats_kwargs)
    config = OperatorConfig(
        nats=replace(nats, kv_replicas=kv_replicas),
        presence=PresencePolicy(missed=missed, refresh_s=refresh),
    )
    raise SystemExit(asyncio.run(_run(config)))


async def _run(config: OperatorConfig) -> int:
    operator = Operator(config)
    install_stop_signals(operator.stop)
    return await operator.run()


def register(group: click.Group) -> None:
    group.add_command(operator_cmd)
