"""``python -m harmony_fleet`` is ``fleet``."""

from harmony_fleet.cli.main import main

main()
