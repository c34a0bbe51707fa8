"""Progress reports for a download: a frozen snapshot, handed out at a bounded rate.

The operator shows bytes, rate and retry count for every device mid-upgrade, so the downloader
reports them; but the receive loop handles a piece every few microseconds on a fast link, and
a callback per piece (which may format, log or queue a status message) would cost more than
the transfer. :class:`ProgressThrottle` therefore reads a monotonic clock per piece and calls
the callback at most every ``interval`` seconds, plus exactly once at the end.

The rate is an exponentially weighted average over reporting intervals, so one slow interval
does not make the figure jump, and it only counts bytes actually received in this call
(bytes resumed from an earlier run are in ``bytes_done`` but not in the rate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DownloadProgress", "ProgressCallback", "ProgressThrottle"]


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress snapshot.

    ``bytes_total`` is ``None`` while neither the caller nor the server has said how big the
    artifact is. ``rate_bps`` is bytes per second. ``retries`` counts attempts after the first.
    """

    bytes_done: int
    bytes_total: int | None
    rate_bps: float
    retries: int


ProgressCallback = Callable[[DownloadProgress], None]

_SMOOTHING = 0.3


class ProgressThrottle:
    """Calls ``callback`` at most every ``interval`` seconds; :meth:`finish` always calls it."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self._interval = interval
        self._clock = clock
        now = clock()
        self._started = now
        self._last_time = now
        self._next = now + interval if callback is not None else float("inf")
        self._received = 0
        self._last_received = 0
        self._rate = 0.0
        self.bytes_total: int | None = None
        self.retries = 0

    def add(self, n: int) -> None:
        """Count ``n`` bytes received in this call (not resumed ones)."""
        self._received += n

    def tick(self, bytes_done: int) -> None:
        """Maybe report; cheap enough to call for every piece received."""
        now = self._clock()
        if now < self._next:
            return
        dt = now - self._last_time
        if dt > 0:
            inst = (self._received - self._last_received) / dt
            first = self._last_received == 0 and self._rate == 0.0
            self._rate = inst if first else _SMOOTHING * inst + (1 - _SMOOTHING) * self._rate
        self._last_time = now
        self._last_received = self._received
        self._next = now + self._interval
        self._emit(bytes_done, self._rate)

    def finish(self, bytes_done: int) -> None:
        """The final report: the rate is the average over the whole call."""
        elapsed = self._clock() - self._started
        rate = self._received / elapsed if elapsed > 0 else 0.0
        self._emit(bytes_done, rate)

    def _emit(self, bytes_done: int, rate: float) -> None:
        if self._callback is not None:
            self._callback(DownloadProgress(bytes_done, self.bytes_total, rate, self.retries))
