"""``fleet demo --ui``: the operator's dashboard (docs/dashboard.md), served during the demo.

The demo's operator runs in the demo's process, so the dashboard runs as one of its tasks
(:class:`~harmony_fleet.operator.http.server.HttpServer`, an operator extension) on loopback,
with a fresh token in the demo's folder; the demo prints the URL that carries it
(``/?token=...``: the page keeps it in a cookie and drops it from the address bar). Needs the
``[dashboard]`` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from harmony_fleet.adapters.nats.files import write_secret
from harmony_fleet.operator.http.tokens import new_token

if TYPE_CHECKING:
    from harmony_fleet.operator.http.server import HttpServer
    from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def ui_options(f: F) -> F:
    f = click.option(
        "--ui-port",
        type=click.IntRange(0, 65535),
        default=0,
        show_default=True,
        help="Port of the dashboard on 127.0.0.1 (0: any free port).",
    )(f)
    return click.option(
        "--ui", is_flag=True, help="Serve the live dashboard during the demo and print its URL."
    )(f)


class DemoDashboard:
    def __init__(self, workdir: Path, port: int) -> None:
        try:
            from harmony_fleet.operator.http.server import (  # noqa: PLC0415
                HttpOptions,
                HttpServer,
            )
        except ImportError as exc:
            raise click.UsageError(
                f"--ui needs the [dashboard] extra (pip install 'harmony-fleet[dashboard]'): {exc}"
            ) from exc
        self.token = new_token()
        tokens = workdir / "dashboard-tokens"
        write_secret(tokens, self.token + "\n")
        self.server: HttpServer = HttpServer(HttpOptions(port=port, token_file=tokens))

    async def open(self, operator: Operator | None) -> str:
        """Listen, and run the server's loop as one of the (running) operator's tasks: it
        stops with the operator. Returns the URL to open, token included."""
        assert operator is not None and operator.nc is not None
        url = await self.server.start(operator)
        operator.spawn(self.server(operator, operator.nc), "http")
        return f"{url}/?token={self.token}"
