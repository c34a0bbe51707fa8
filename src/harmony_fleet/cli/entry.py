"""The ``fleet`` program's first step: send the unit's watch hooks past the CLI.

``fleet agent watch-hook`` runs from the agent unit's ``ExecStartPre=`` and ``ExecStopPost=`` on
every (re)start of the agent (``adapters.systemd.watch_hook``). Loading click and every command
module would add a second to each start on a small board, so this entry checks for the hook
first and imports the CLI only for everything else.
"""

from __future__ import annotations

import sys

HOOK = ["agent", "watch-hook"]


def main() -> None:
    """Console-script and artifact entry point."""
    if sys.argv[1:3] == HOOK:
        from harmony_fleet.adapters.systemd.watch_hook import main as hook  # noqa: PLC0415

        sys.exit(hook(sys.argv[3:]))
    from harmony_fleet.cli.main import main as cli  # noqa: PLC0415

    cli()


if __name__ == "__main__":
    main()
