"""``sd_notify(3)`` for the watchdog: tell systemd the main instance's heartbeat loop is alive.

The agent's unit sets ``WatchdogSec=`` (see ``install.render_unit``): systemd then expects a
``WATCHDOG=1`` datagram on ``$NOTIFY_SOCKET`` at least that often, and kills the service with
``SIGABRT`` when one is missing (``$SERVICE_RESULT=watchdog`` in the unit's ``ExecStopPost=``
hook, which the post-commit watch reads as a silence). The agent pings on every heartbeat tick,
at the same place it touches ``main.alive`` for the process-mode supervisor.

Why not ``python-systemd`` or ``sdnotify``: the protocol is one datagram on a Unix socket, and a
C extension would have to be built for every device architecture.

Slow is not broken: the unit's ``WatchdogSec=`` is generous, room for a slow first start on a
loaded board, and the main's *first* ping also sends ``WATCHDOG_USEC=`` (systemd 236 and
later) to tighten the watchdog to the liveness bound once it is up. An older systemd ignores
that field and keeps the generous bound.

Only the process systemd started may ping (``$WATCHDOG_PID``, as ``sd_watchdog_enabled(3)``
checks): a self-test the agent runs inherits the environment, and must not keep a silent main
alive by proxy.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class WatchdogNotifier:
    """Sends ``WATCHDOG=1`` to one notify socket; never raises (a ping is best effort)."""

    def __init__(
        self, address: str, interval_s: float, *, tighten_to_s: float | None = None
    ) -> None:
        self.address = address
        self.interval_s = interval_s
        """systemd's ``WatchdogSec`` for this process (pings must come more often)."""
        self.tighten_to_s = tighten_to_s if tighten_to_s and tighten_to_s < interval_s else None
        """The watchdog the first ping asks for, once the main is up (None: keep it)."""
        self.sent = 0
        self.failed = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        pid: int | None = None,
        tighten_to_s: float | None = None,
    ) -> WatchdogNotifier | None:
        """A notifier when systemd asked *this* process for watchdog pings, else None."""
        env = os.environ if environ is None else environ
        address, usec, for_pid = (
            env.get("NOTIFY_SOCKET", ""),
            env.get("WATCHDOG_USEC", ""),
            env.get("WATCHDOG_PID", ""),
        )
        if not address or not usec:
            return None
        if for_pid and for_pid != str(os.getpid() if pid is None else pid):
            return None
        try:
            interval_s = int(usec) / 1e6
        except ValueError:
            log.warning("WATCHDOG_USEC is not a number; no watchdog pings", extra={"value": usec})
            return None
        if address[0] not in "/@":
            log.warning("NOTIFY_SOCKET is not a Unix socket path", extra={"value": address})
            return None
        return cls(address, interval_s, tighten_to_s=tighten_to_s)

    def _target(self) -> str | bytes:
        # A leading '@' names a socket in the abstract namespace (a NUL byte on the wire).
        return b"\0" + self.address[1:].encode() if self.address.startswith("@") else self.address

    def ping(self) -> bool:
        """One ``WATCHDOG=1``; False (and a count) when the socket would not take it."""
        message = b"WATCHDOG=1"
        if self.sent == 0 and self.tighten_to_s is not None:
            message += b"\nWATCHDOG_USEC=%d" % round(self.tighten_to_s * 1e6)
        try:
            self._sock.sendto(message, self._target())
        except OSError as exc:
            self.failed += 1
            if self.failed == 1:
                log.warning("watchdog ping failed", extra={"error": str(exc)})
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close()
