"""Where artifact bytes may come from, and how an artifact URL is shown in logs and statuses.

An agent runs what it downloads as root, and a marker's ``artifact_url`` often carries a token
(a pre-signed query string). So, for every URL an artifact is fetched from (the marker's, the
install's, and every redirect hop):

* the scheme is ``https``. Plain ``http`` is taken only for a loopback host (127.0.0.0/8, ::1,
  ``localhost``: the bytes never leave the machine) or when the device's owner opted in
  (``--allow-http-artifacts``, :attr:`ArtifactAccess.allow_http`). Any other scheme is refused.
* a redirect from ``https`` to ``http`` is refused on any hop, opt-in or not: the first hop's
  TLS would otherwise protect nothing.
* ``user:password@`` is refused: it would reach logs, statuses and command lines. Tokens go in
  the query string (pre-signed URLs) or in headers.

:func:`redact_url` is what every log line, error and status shows instead of the URL: scheme,
host, port and path, with the query and fragment replaced by ``?…`` and any userinfo dropped.
:func:`redact_text` does the same for every URL inside a text (a third-party error message), and
:class:`RedactURLs` for every record of the HTTP libraries' own loggers (httpx logs each request's
URL at INFO).

Pure and stdlib-only: the agent and the CLI check a URL without importing httpx.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.errors import DownloadRejected

__all__ = [
    "ALLOW_HTTP_FLAG",
    "HTTPS_ONLY",
    "ArtifactAccess",
    "RedactURLs",
    "artifact_access",
    "artifact_argv",
    "check_artifact_url",
    "check_redirect",
    "is_loopback",
    "redact_library_logs",
    "redact_text",
    "redact_url",
]

log = logging.getLogger(__name__)

#: The agent's (and ``fleet upgrade``'s, ``fleet agent install``'s) opt-in for plain http.
ALLOW_HTTP_FLAG = "--allow-http-artifacts"

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


@dataclass(frozen=True, kw_only=True)
class ArtifactAccess:
    """How a device may fetch artifacts: the http opt-in and an extra CA to trust."""

    allow_http: bool = False
    """Take plain ``http`` from any host (``--allow-http-artifacts``); loopback needs no opt-in."""
    ca_file: str | None = None
    """A PEM bundle trusted for ``https`` artifact servers besides the usual roots
    (``--artifact-ca``): a private CA of the site's artifact server."""


#: The default: https, plain http for loopback only, the usual CA roots.
HTTPS_ONLY = ArtifactAccess()


def artifact_access(allow_http: bool, ca_file: Path | None) -> ArtifactAccess:
    """The access ``--allow-http-artifacts`` and ``--artifact-ca FILE`` ask for."""
    return ArtifactAccess(
        allow_http=allow_http, ca_file=str(ca_file.resolve()) if ca_file else None
    )


def artifact_argv(allow_http: bool, ca_file: Path | None) -> tuple[str, ...]:
    """The flags again, for a candidate's or a unit's command line (the CA path absolute)."""
    return (*((ALLOW_HTTP_FLAG,) if allow_http else ()),) + (
        ("--artifact-ca", str(ca_file.resolve())) if ca_file else ()
    )


def is_loopback(host: str) -> bool:
    """Is ``host`` this machine: ``localhost`` (and ``*.localhost``), 127.0.0.0/8 or ::1."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """``url`` as it may be logged: no userinfo, the query and fragment replaced by ``…``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an unparsable URL)"
    if not parts.scheme or not host:
        return "(an unparsable URL)" if ("@" in url or "?" in url) else url[:200]
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query or parts.fragment:
        shown += "?…"
    return shown


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


class RedactURLs(logging.Filter):
    """A logging filter that redacts every URL in a record's message (:func:`redact_text`).

    Installed on the loggers of the HTTP libraries (httpx logs ``HTTP Request: GET <url>`` at
    INFO), whose messages we do not write: no token leaves through them either.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact_text(message)
        if shown != message:
            record.msg, record.args = shown, None
        return True


def redact_library_logs(*names: str) -> None:
    """Put one :class:`RedactURLs` on each named logger (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactURLs) for f in logger.filters):
            logger.addFilter(RedactURLs())


def check_artifact_url(url: str, access: ArtifactAccess = HTTPS_ONLY) -> None:
    """Refuse a URL an artifact may not come from (:class:`DownloadRejected`, one line).

    The message names the URL redacted, and the flag that would change the answer.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise DownloadRejected(f"not a usable URL: {redact_url(url)}: {exc}") from exc
    scheme = parts.scheme.lower()
    shown = redact_url(url)
    if scheme not in ("http", "https"):
        raise DownloadRejected(f"not an http(s) URL: {shown} (artifacts come over https)")
    if not host:
        raise DownloadRejected(f"no host in URL: {shown}")
    if parts.username is not None or parts.password is not None:
        raise DownloadRejected(
            f"user:password in the artifact URL {shown} is refused: it would reach logs and "
            "statuses; use a token in the query string (a pre-signed URL)"
        )
    if scheme == "http" and not access.allow_http and not is_loopback(host):
        raise DownloadRejected(
            f"plain http artifact URL {shown} refused: use https (anyone on the way could "
            f"swap the bytes or read the URL's token), or opt in with {ALLOW_HTTP_FLAG}"
        )


def check_redirect(source: str, target: str, access: ArtifactAccess = HTTPS_ONLY) -> None:
    """Refuse a redirect hop ``source`` -> ``target``: never ``https`` to ``http``, and the
    target must pass :func:`check_artifact_url` itself."""
    if (
        urllib.parse.urlsplit(source).scheme.lower() == "https"
        and urllib.parse.urlsplit(target).scheme.lower() != "https"
    ):
        raise DownloadRejected(
            f"redirect from {redact_url(source)} to {redact_url(target)} refused: it leaves "
            "https for plain http (a downgrade, whatever the flags)"
        )
    check_artifact_url(target, access)
