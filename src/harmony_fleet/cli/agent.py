"""``fleet agent run``: the device agent (``fleet agent install`` lives in ``cli/install.py``).

The agent's flags are parsed by the agent's own entry (:mod:`harmony_fleet.agent.main`, argparse),
so that an idle agent does not carry click and the rest of the CLI: ``fleet``'s entry sends
``agent run …`` there before loading click at all (``cli.entry``). This click command hands its
arguments over unparsed, for ``fleet`` run any other way (``python -m harmony_fleet.cli.main``,
tests through click's runner); ``fleet agent run --help`` prints the agent entry's help.
"""

from __future__ import annotations

import click


@click.group("agent")
def agent_group() -> None:
    """The device agent."""


@agent_group.command(
    "run",
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(args: tuple[str, ...]) -> None:
    """Run the agent for one device until SIGTERM or SIGINT (flags: fleet agent run --help)."""
    # Imported here: the agent's entry marks aiohttp absent, which kopf (fleet operator) needs.
    from harmony_fleet.agent.main import main as agent_main  # noqa: PLC0415

    raise SystemExit(agent_main(list(args), prog="fleet agent run"))


def register(group: click.Group) -> None:
    group.add_command(agent_group)
