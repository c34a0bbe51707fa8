"""``python -m harmony_fleet`` is ``fleet``."""

from harmony_fleet.cli.entry import main

main()
