"""Turning httpx and OS errors into harmony-fleet's tree, at the point where they enter.

Callers (the agent's upgrade flow) decide "retry later" versus "give up" by catching
:class:`~harmony_fleet.errors.TemporaryError` or :class:`~harmony_fleet.errors.PermanentError`;
they must never import httpx to do so. The table below is the single place that decides which
transport failure is worth another attempt. It is ordered most specific first, and a test walks
every httpx exception class to check each one lands on one of ours.

A TLS certificate that fails verification arrives from httpx as a plain ``ConnectError``; it is
told apart by the ``ssl.SSLCertVerificationError`` in its cause chain and made permanent,
because retrying for two hours against a wrong certificate helps nobody.

Every message shows the URL redacted (:func:`.urls.redact_url`), and URLs inside httpx's own
text too: a token in a query string must not reach a log or a status.
"""

from __future__ import annotations

import errno
import ssl
from pathlib import Path

import httpx

from harmony_fleet.adapters.http.urls import redact_text, redact_url
from harmony_fleet.errors import (
    ConfigError,
    DownloadInterrupted,
    DownloadRejected,
    FleetError,
    HTTPStatusError,
    InsufficientSpace,
    Timeout,
    Unavailable,
)

__all__ = ["HTTPX_ERROR_MAP", "RETRY_STATUSES", "wrap_httpx_error", "wrap_os_error"]

RETRY_STATUSES = frozenset({408, 429})
"""4xx answers worth retrying (with every 5xx): request timeout, too many requests."""

HTTPX_ERROR_MAP: tuple[tuple[type[Exception], type[FleetError]], ...] = (
    (httpx.HTTPStatusError, HTTPStatusError),  # only from a caller's raise_for_status hook
    (httpx.TooManyRedirects, DownloadRejected),
    (httpx.UnsupportedProtocol, DownloadRejected),  # the artifact's URL: see policy.check_url
    (httpx.InvalidURL, DownloadRejected),
    (httpx.LocalProtocolError, ConfigError),
    (httpx.DecodingError, DownloadRejected),
    (httpx.ConnectTimeout, Timeout),
    (httpx.PoolTimeout, Timeout),
    (httpx.WriteTimeout, Timeout),
    (httpx.ReadTimeout, DownloadInterrupted),
    (httpx.TimeoutException, Timeout),
    (httpx.ProxyError, Unavailable),
    (httpx.ConnectError, Unavailable),
    (httpx.RemoteProtocolError, DownloadInterrupted),
    (httpx.ProtocolError, DownloadInterrupted),
    (httpx.ReadError, DownloadInterrupted),
    (httpx.WriteError, DownloadInterrupted),
    (httpx.CloseError, DownloadInterrupted),
    (httpx.NetworkError, DownloadInterrupted),
    (httpx.TransportError, DownloadInterrupted),
    (httpx.RequestError, DownloadInterrupted),
    (httpx.HTTPError, DownloadInterrupted),
)
"""(httpx class, our class): the first row whose class matches wins."""


def _tls_verification_failed(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def wrap_httpx_error(exc: Exception, url: str) -> FleetError:
    """Our error for an httpx error raised while fetching ``url``; raise it ``from exc``."""
    detail = redact_text(str(exc)) or type(exc).__name__  # httpx may quote the URL
    url = redact_url(url)
    if isinstance(exc, httpx.ConnectError) and _tls_verification_failed(exc):
        return DownloadRejected(f"TLS certificate verification failed for {url}: {detail}")
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code in RETRY_STATUSES or code >= 500:
            return DownloadInterrupted(f"HTTP {code} from {url}")
        return HTTPStatusError(url, code)
    for httpx_cls, ours in HTTPX_ERROR_MAP:
        if isinstance(exc, httpx_cls):
            return ours(f"{type(exc).__name__} for {url}: {detail}")
    return DownloadInterrupted(f"{type(exc).__name__} for {url}: {detail}")


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENOENT}


def wrap_os_error(
    exc: OSError, path: Path, *, needed: int | None = None, free: int | None = None
) -> FleetError:
    """Our error for a filesystem failure on ``path``.

    A full disk or quota is :class:`InsufficientSpace`; a path we may not write is a
    :class:`ConfigError`; anything else (EIO and friends) is :class:`DownloadRejected`, because
    a broken disk does not heal by retrying the download.
    """
    if exc.errno in _NO_SPACE:
        return InsufficientSpace(str(path), needed, free)
    if exc.errno in _NOT_ALLOWED:
        return ConfigError(f"cannot use {path}: {exc.strerror or exc}")
    return DownloadRejected(f"I/O error on {path}: {exc.strerror or exc}")
