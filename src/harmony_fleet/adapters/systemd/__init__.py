"""systemd on the device: run upgrade candidates as transient units, install the agent service.

``systemctl`` wraps the three tools (``systemctl``, ``systemd-run``, ``journalctl``) as async
calls over argument lists; ``units`` builds names and vectors as data and escapes what systemd
would otherwise expand; ``executor`` is the production
:class:`~harmony_fleet.core.upgrade.executor.UpgradeExecutor`; ``install`` renders and installs
the agent's service unit (``fleet agent install``); ``watch_hook`` and ``notify`` are the
unit's post-commit watch (its hooks, and the watchdog pings of the main). See
``docs/executors.md`` and ``docs/install.md``.

Nothing is imported here: the unit's hooks run on every restart of the agent and load only
what they use (``watch_hook`` never pulls in the HTTP client the executor needs).
"""
