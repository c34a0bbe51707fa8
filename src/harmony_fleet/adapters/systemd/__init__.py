"""systemd on the device: run upgrade candidates as transient units, install the agent service.

``systemctl`` wraps the three tools (``systemctl``, ``systemd-run``, ``journalctl``) as async
calls over argument lists; ``units`` builds names and vectors as data and escapes what systemd
would otherwise expand; ``executor`` is the production
:class:`~harmony_fleet.core.upgrade.executor.UpgradeExecutor`; ``install`` renders and installs
the agent's service unit (``fleet agent install``). See ``docs/executors.md`` and
``docs/install.md``.
"""

from harmony_fleet.adapters.systemd.executor import SystemdUpgradeExecutor
from harmony_fleet.adapters.systemd.systemctl import Systemd, SystemdError, SystemdUnavailable
from harmony_fleet.adapters.systemd.units import DEFAULT_SERVICE, candidate_unit, service_name

__all__ = [
    "DEFAULT_SERVICE",
    "Systemd",
    "SystemdError",
    "SystemdUnavailable",
    "SystemdUpgradeExecutor",
    "candidate_unit",
    "service_name",
]
