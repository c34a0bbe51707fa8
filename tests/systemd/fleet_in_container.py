"""``fleet`` inside the container, with ``agent install``/``uninstall`` registered.

Until ``cli/main.py`` registers :mod:`harmony_fleet.cli.install` itself this does it; after, the
second registration is a no-op (click replaces a command by name).
"""

import sys

from harmony_fleet.cli import install
from harmony_fleet.cli.main import cli

install.register(cli)
cli.main(args=sys.argv[1:], prog_name="fleet")
