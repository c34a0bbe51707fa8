"""Who may look: the dashboard's bearer tokens.

Everything the HTTP server answers, except the two probes (``/healthz``, ``/readyz``), needs a
token from the operator's token file (``--http-token-file``; ``fleet credentials http-token``
writes one, 0600). A client presents it as ``Authorization: Bearer TOKEN`` (Prometheus, curl,
the JSON API), or once as ``?token=TOKEN`` on a page: the server answers with an HttpOnly,
SameSite=Strict cookie and a redirect to the same page without the query, so a browser's
``fetch`` and ``EventSource`` (which cannot set headers) carry it from then on.

Tokens are compared in constant time. The file is read again when it changes (a token is added
or withdrawn without a restart); a file that cannot be read keeps the tokens read before. Why a
token file and not the NATS credentials: a viewer's ``.creds`` proves its holder by signing the
server's nonce, which a browser cannot do, and its JWT alone is not a secret (docs/security.md,
"The dashboard").
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path

from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: The cookie a browser carries after ``?token=``.
COOKIE = "fleet_token"
#: Shortest token accepted from the file (``new_token`` makes 43 characters).
MIN_CHARS = 24


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def parse_tokens(text: str, *, source: str) -> frozenset[str]:
    """The tokens of a token file: one a line; blank lines and ``#`` comments are skipped."""
    tokens = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) < MIN_CHARS or any(c.isspace() for c in line):
            raise ConfigError(
                f"{source}, line {number}: a token is one word of at least {MIN_CHARS} "
                "characters (`fleet credentials http-token` makes one)"
            )
        tokens.add(line)
    if not tokens:
        raise ConfigError(f"{source}: no token in it (`fleet credentials http-token` makes one)")
    return frozenset(tokens)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class TokenFile:
    """The tokens of one file, read at start (a bad file is a :class:`ConfigError` then) and
    again whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._tokens = frozenset[str]()
        self._load(first=True)

    def _load(self, *, first: bool = False) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            tokens = parse_tokens(self.path.read_text(), source=str(self.path))
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            if first:
                if isinstance(exc, ConfigError):
                    raise
                raise ConfigError(f"cannot read the token file {self.path}: {exc}") from exc
            log.warning(
                "token file not re-read, keeping the tokens read before",
                extra={"path": str(self.path), "error": str(exc)},
            )
            return
        if st.st_mode & 0o077:
            log.warning(
                "the token file is readable by others than its owner (chmod 600 it)",
                extra={"path": str(self.path)},
            )
        self._stamp, self._tokens = stamp, tokens

    def allows(self, presented: str | None) -> bool:
        """True when ``presented`` is one of the file's tokens (constant-time comparison)."""
        if not presented:
            return False
        self._load()
        given = presented.encode()
        # Compare with every token, not stopping at a match: the time does not say which.
        found = False
        for token in self._tokens:
            found |= hmac.compare_digest(given, token.encode())
        return found
