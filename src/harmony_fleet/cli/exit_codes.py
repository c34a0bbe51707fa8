"""Exit codes of ``fleet``, by what the caller (a person or a script) should do next.

====  ===============  ============================================================
code  name             meaning
====  ===============  ============================================================
0     OK               done
1     FAILED           the operation ran and failed (an upgrade rolled back, a check failed)
2     USAGE            bad flag, file or value: fix the input (click uses 2 as well)
3     NOT_FOUND        no such device, key or version
4     REFUSED          the other side understood and declined
5     SUPERSEDED       a newer request replaced the one followed (``--wait``): follow that one
69    UNAVAILABLE      NATS (or another server) cannot be reached: retry later
75    TEMPFAIL         timed out or outcome unknown: retry later
130   INTERRUPTED      stopped by Ctrl-C
====  ===============  ============================================================
"""

from __future__ import annotations

from harmony_fleet.errors import (
    ConfigError,
    FleetError,
    InvalidMessage,
    NotFound,
    Refused,
    TemporaryError,
    Unavailable,
)

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
REFUSED = 4
SUPERSEDED = 5
UNAVAILABLE = 69
TEMPFAIL = 75
INTERRUPTED = 130


def for_error(exc: FleetError) -> int:
    """The exit code for one of our errors."""
    if isinstance(exc, (ConfigError, InvalidMessage)):
        return USAGE
    if isinstance(exc, NotFound):
        return NOT_FOUND
    if isinstance(exc, Refused):
        return REFUSED
    if isinstance(exc, Unavailable):
        return UNAVAILABLE
    if isinstance(exc, TemporaryError):
        return TEMPFAIL
    return FAILED
