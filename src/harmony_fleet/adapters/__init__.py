"""Adapters: everything that talks to the outside world (NATS, HTTP, the OS, systemd).

Third-party errors are wrapped here, where they enter, into :mod:`harmony_fleet.errors`.
"""
