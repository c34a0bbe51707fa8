"""The ``fleet`` root group: our errors as one line and a meaningful exit code.

:func:`fleet_group` makes the root of the whole CLI (``cli.main``) and of the agent's commands
alone (:func:`agent_cli`: ``fleet agent install|uninstall|run``, which ``cli.entry`` loads for
``fleet agent …`` without the fleet-wide commands and rich).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from harmony_fleet._version import __version__
from harmony_fleet.cli import exit_codes
from harmony_fleet.errors import FleetError

log = logging.getLogger(__name__)

HELP = """harmony-fleet: keep fleets of Linux edge devices under control.

Exit codes: 0 ok, 1 failed, 2 bad input, 3 not found, 4 refused, 5 superseded by a newer
request, 69 NATS unreachable, 75 timed out (retry), 130 interrupted.
"""


class FleetGroup(click.Group):
    """A click group that turns our errors into one line and a meaningful exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FleetError as exc:
            click.echo(f"fleet: error: {exc}", err=True)
            ctx.exit(exit_codes.for_error(exc))
        except KeyboardInterrupt:
            click.echo("fleet: interrupted", err=True)
            ctx.exit(exit_codes.INTERRUPTED)


def fleet_group() -> FleetGroup:
    """A new, empty ``fleet`` root group (``--version``, ``-h``)."""

    @click.group(
        cls=FleetGroup, help=HELP, context_settings={"help_option_names": ["-h", "--help"]}
    )
    @click.version_option(__version__, "--version", "-V", prog_name="fleet")
    def cli() -> None:
        pass

    assert isinstance(cli, FleetGroup)
    return cli


def agent_cli() -> None:
    """``fleet agent …`` with only the agent's commands loaded; exits."""
    from harmony_fleet.cli import agent, install  # noqa: PLC0415

    cli = fleet_group()
    agent.register(cli)
    install.register(cli)
    sys.exit(cli.main(prog_name="fleet"))
