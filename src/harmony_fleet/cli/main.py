"""``fleet``: the whole CLI. Commands live in sibling modules and register here; the root group
is ``cli.group``'s, and ``cli.entry`` sends the agent's own commands past this module."""

from __future__ import annotations

import sys

from harmony_fleet.cli.group import fleet_group

cli = fleet_group()


def _register() -> None:
    from harmony_fleet.cli import (  # noqa: PLC0415
        agent,
        artifact,
        credentials,
        demo,
        devices,
        doctor,
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
        doctor,
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
