"""The ``fleet`` program's first step: send the agent's own commands past the CLI.

Loading click and every command module costs a small board ~15 MB of memory and most of a second
per start, so this entry looks at the arguments first:

* ``fleet agent run …`` is the agent (``agent.main``, argparse): the systemd unit, the supervisor
  and upgrade candidates all start ``<artifact> agent run …``, and an idle agent should cost what a
  bare NATS client costs (docs/agent.md, "Footprint");
* ``fleet agent watch-hook`` runs from the agent unit's ``ExecStartPre=`` and ``ExecStopPost=``
  on every (re)start of the agent (``adapters.systemd.watch_hook``);
* ``fleet --version`` is what ``fleet agent install`` asks an artifact;
* ``fleet agent …`` (install, uninstall) loads only the agent's commands: an artifact carries
  click but not rich (docs/artifacts.md), which the fleet-wide commands print with;
* everything else loads the whole CLI.
"""

from __future__ import annotations

import sys

HOOK = ["agent", "watch-hook"]
RUN = ["agent", "run"]


def main() -> None:
    """Console-script and artifact entry point."""
    args = sys.argv[1:]
    if args[:2] == RUN:
        from harmony_fleet.agent.main import main as agent  # noqa: PLC0415

        sys.exit(agent(args[2:], prog="fleet agent run"))
    if args[:2] == HOOK:
        from harmony_fleet.adapters.systemd.watch_hook import main as hook  # noqa: PLC0415

        sys.exit(hook(args[2:]))
    if args in (["--version"], ["-V"]):
        from harmony_fleet._version import __version__  # noqa: PLC0415

        print(f"fleet, version {__version__}")
        sys.exit(0)
    if args[:1] == ["agent"]:
        from harmony_fleet.cli.group import agent_cli  # noqa: PLC0415

        agent_cli()
    try:
        from harmony_fleet.cli.main import main as cli  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if exc.name not in ("rich", "pygments", "markdown_it"):
            raise
        print(
            "fleet: error: this agent artifact carries the agent's commands only (fleet agent "
            f"run|install|uninstall, --version): {' '.join(args[:1])!r} needs the harmony-fleet "
            "package",
            file=sys.stderr,
        )
        sys.exit(2)
    cli()


if __name__ == "__main__":
    main()
