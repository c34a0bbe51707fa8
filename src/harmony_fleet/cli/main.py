"""``fleet``: the entry point. Commands live in sibling modules and register here."""

from __future__ import annotations

import sys
from typing import Any

import click

from harmony_fleet._version import __version__
from harmony_fleet.cli import exit_codes
from harmony_fleet.errors import FleetError


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


@click.group(cls=FleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="fleet")
def cli() -> None:
    """harmony-fleet: keep fleets of Linux edge devices under control.

    Exit codes: 0 ok, 1 failed, 2 bad input, 3 not found, 4 refused, 5 superseded by a newer
    request, 69 NATS unreachable, 75 timed out (retry), 130 interrupted.
    """


def _register() -> None:
    from harmony_fleet.cli import (  # noqa: PLC0415
        agent,
        artifact,
        credentials,
        demo,
        devices,
        install,
        logs,
        operator,
        release,
        rollback,
        rollout,
        schema,
        server,
        sim,
        upgrade,
    )

    for module in (
        server,
        credentials,
        agent,
        install,
        operator,
        devices,
        upgrade,
        rollback,
        release,
        rollout,
        logs,
        artifact,
        schema,
        demo,
        sim,
    ):
        module.register(cli)


_register()


def main() -> None:
    """Console script entry point."""
    sys.exit(cli.main(prog_name="fleet"))


if __name__ == "__main__":
    main()
