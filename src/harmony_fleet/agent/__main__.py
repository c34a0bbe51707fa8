"""``python -m harmony_fleet.agent`` is ``fleet agent run`` (without the CLI: ``agent.main``)."""

import sys

from harmony_fleet.agent.main import main

sys.exit(main(prog="python -m harmony_fleet.agent"))
