"""The device side under systemd: candidates as transient units, the agent as an installed service.

``systemctl`` wraps the three tools (``systemctl``, ``systemd-run``, ``journalctl``) as async
calls over argument lists; ``units`` builds names and vectors as data and escapes what systemd
would otherwise expand; ``runner`` is the production
:class:`~harmony_fleet.core.upgrade.device.CandidateRunner`; ``unit_file`` renders the agent's
service unit and ``install`` installs it (``fleet agent install``); ``watch_hook`` and
``notify`` are the unit's post-commit watch (its hooks, and the watchdog pings of the main),
the systemd twin of the process-mode supervisor. See ``docs/device.md`` and ``docs/install.md``.

Nothing is imported here: the unit's hooks run on every restart of the agent and load only
what they use (``watch_hook`` never pulls in the HTTP client staging needs).
"""
