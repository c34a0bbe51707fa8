"""How hard a download tries: the knobs, and the pure rules for waiting between attempts.

Edge devices sit behind links that drop, stall and crawl (50 KB/s against a 370 MB artifact is a
real report), and a fleet of thousands retrying in lockstep can flatten an artifact server. So
the defaults favour finishing eventually over failing fast: a two-hour overall deadline (as
Elastic Agent uses), a 60 s stall timeout rather than a short read timeout, and retries bounded
by that deadline with exponential backoff and *full* jitter (a uniform draw between zero and the
exponential cap), which spreads a fleet's retries out instead of synchronising them.

The backoff and ``Retry-After`` rules, and which URLs may be fetched at all, live here as pure
functions so they can be tested without a clock or a network.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import urllib.parse
from dataclasses import dataclass

from harmony_fleet.adapters.http.urls import redact_url
from harmony_fleet.errors import ConfigError, DownloadRejected

MIB = 1024 * 1024
SCHEMES = frozenset({"http", "https"})
"""The only URL schemes an artifact is fetched from."""

__all__ = ["MIB", "SCHEMES", "DownloadPolicy", "backoff_delay", "check_url", "parse_retry_after"]


@dataclass(frozen=True, kw_only=True)
class DownloadPolicy:
    """Limits and timings for :func:`~harmony_fleet.adapters.http.downloader`.

    Every duration is in seconds. The defaults are production values, not test values.
    """

    deadline_s: float = 2 * 3600.0
    """Overall budget for one call, waiting for the lock and all retries included."""
    stall_timeout_s: float = 60.0
    """Give up on a response (and retry) when no byte arrives for this long."""
    connect_timeout_s: float = 30.0
    """Budget for TCP + TLS setup of one request."""
    backoff_initial_s: float = 1.0
    """Cap of the first retry's jittered wait; doubles per failure without progress."""
    backoff_max_s: float = 60.0
    """Largest wait between two attempts (before ``Retry-After``)."""
    max_retries: int | None = None
    """Retries after the first attempt; ``None`` leaves the deadline as the only bound."""
    retry_after_max_s: float = 300.0
    """A server's ``Retry-After`` is honoured up to this many seconds."""
    max_redirects: int = 10
    """Redirects followed per request; more ends as :class:`DownloadRejected`."""
    chunk_size: int = MIB
    """Bytes gathered before one hash+write step (the receive pieces are smaller)."""
    progress_interval_s: float = 0.25
    """Minimum time between two progress callbacks (a final one always comes)."""
    max_bytes: int | None = None
    """Refuse bodies larger than this when the caller gives no ``size``."""
    keep_free_bytes: int = 0
    """Room to leave free on the destination filesystem beyond the artifact itself."""
    lock_poll_max_s: float = 0.25
    """Longest pause between two tries to take the destination's lock."""

    def __post_init__(self) -> None:
        positive = {
            "deadline_s": self.deadline_s,
            "stall_timeout_s": self.stall_timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
            "backoff_max_s": self.backoff_max_s,
            "chunk_size": self.chunk_size,
            "lock_poll_max_s": self.lock_poll_max_s,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"DownloadPolicy.{name} must be > 0, got {value!r}")
        not_negative = {
            "backoff_initial_s": self.backoff_initial_s,
            "retry_after_max_s": self.retry_after_max_s,
            "max_redirects": self.max_redirects,
            "progress_interval_s": self.progress_interval_s,
            "keep_free_bytes": self.keep_free_bytes,
            "max_retries": 0 if self.max_retries is None else self.max_retries,
            "max_bytes": 0 if self.max_bytes is None else self.max_bytes,
        }
        for name, value in not_negative.items():
            if value < 0:
                raise ConfigError(f"DownloadPolicy.{name} must be >= 0, got {value!r}")


def backoff_delay(
    failures: int, *, initial_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 for the first): full jitter.

    The cap grows as ``initial_s * 2**(failures-1)`` up to ``max_s``; the wait is drawn
    uniformly from ``[0, cap]``.
    """
    if failures < 1:
        return 0.0
    cap = min(max_s, initial_s * 2.0 ** min(failures - 1, 64))
    return (rng or random).uniform(0.0, cap)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for, from delay-seconds or an HTTP date.

    ``now`` is the current Unix time (for the date form). A date in the past gives ``0.0``;
    a missing or unparsable value gives ``None``. Capping is the caller's business.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime dates carry no zone; RFC 9110 says they are GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def check_url(url: str) -> None:
    """Refuse a URL no download may use: not http(s), or without a host.

    The URL is part of what was asked for (the marker's ``artifact_url``), so a bad one is a
    :class:`DownloadRejected`, as a 404 is: asking again the same way cannot help, and nothing
    on the device is wrong. ``file://`` is refused on purpose: an agent reads no local file
    named by a message. The message shows the URL redacted (:func:`.urls.redact_url`); which
    hosts and schemes an *artifact* may come from is :func:`.urls.check_artifact_url`.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise DownloadRejected(f"not a usable URL: {redact_url(url)}: {exc}") from exc
    if parts.scheme.lower() not in SCHEMES:
        raise DownloadRejected(f"not an http(s) URL: {redact_url(url)}")
    if not parts.hostname:
        raise DownloadRejected(f"no host in URL: {redact_url(url)}")


#: The defaults (``DownloadPolicy()``), named once.
DEFAULT_POLICY = DownloadPolicy()
