"""harmony-fleet: keep fleets of Linux edge devices under control.

Layers, each importing only the ones below it (enforced by import-linter, see pyproject.toml):

    cli  ->  agent | operator  ->  adapters  ->  core  ->  contracts  ->  errors

``contracts`` are the wire types; ``core`` is pure logic with no I/O (the upgrade state machine,
the commit decision, presence); ``adapters`` talk to NATS, HTTP, the OS and systemd; ``agent`` runs
on each device and ``operator`` in the control plane, and they never import each other.
"""

from harmony_fleet._version import __version__

__all__ = ["__version__"]
