"""``fleet doctor``: is the control plane's storage healthy? Each stream's replicas, leader, lag.

Every bucket (``KV_<bucket>``), object store (``OBJ_<store>``) and the log stream, as the
cluster sees it now (:mod:`~harmony_fleet.adapters.nats.health`). Exit 0 when every one has a
leader and all its replicas are current, 1 otherwise (a node down, a replica catching up).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.health import StreamHealth, stream_health
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import build_nats_options, nats_options, print_json

log = logging.getLogger(__name__)


async def _read(options: NatsOptions) -> list[StreamHealth]:
    nc = await connect(options.with_name("fleet-doctor"))
    try:
        return await stream_health(nc)
    finally:
        await nc.close()


def _table(streams: list[StreamHealth]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("STREAM", "REPLICAS", "LEADER", "FOLLOWERS", "LAG", "OK"):
        table.add_column(column)
    for s in streams:
        followers = " ".join(
            f"{f.name}({'offline' if f.offline else 'current' if f.current else 'behind'})"
            for f in s.followers
        )
        table.add_row(
            s.name,
            str(s.replicas),
            s.leader or "-",
            followers or "-",
            str(s.lag),
            "yes" if s.ok else "NO",
        )
    return table


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: every stream's state.")
@nats_options
def doctor_cmd(as_json: bool, **nats_kwargs: Any) -> None:
    """Each bucket's and stream's replicas, leader and lag; exit 1 unless all are healthy."""
    streams = asyncio.run(_read(build_nats_options(**nats_kwargs)))
    healthy = all(s.ok for s in streams)
    if as_json:
        print_json({"ok": healthy, "streams": [s.as_json() for s in streams]})
    else:
        Console().print(_table(streams))
    raise SystemExit(exit_codes.OK if healthy else exit_codes.FAILED)


def register(group: click.Group) -> None:
    group.add_command(doctor_cmd)
