"""Connecting to NATS: options that leave room for credentials, and reconnect forever.

nats-py gives up reconnecting after about two minutes by default and then closes the connection;
a long-lived agent or operator must never do that, so :func:`connect` sets
``max_reconnect_attempts=-1``. The first connection is also retried forever (with backoff and
jitter) by :func:`connect_forever`, so an agent started before NATS exists connects once it
appears.

Credentials: user/password, a token, a ``.creds`` file (a device's own, issued by ``fleet
credentials issue``) and TLS are fields of :class:`NatsOptions` and passed straight through.
``inbox_prefix`` gives a device's (or a viewer's) replies a prefix of their own (its credentials
allow no other); left out, it is read from the ``.creds`` file's own subscribe permissions
(:func:`inbox_prefix_of_creds`), so ``fleet`` commands run with a viewer's credentials just work.
A server that refuses the credentials, or a certificate the CA does not vouch for, is a
:class:`~harmony_fleet.errors.ConfigError` naming the file to fix, not an unreachable server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import random
import ssl
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.adapters.nats.slow import Drops
from harmony_fleet.errors import ConfigError, Unavailable

DEFAULT_URL = "nats://127.0.0.1:4222"


class _QuietTlsEof(logging.Filter):
    """asyncio warns on every TLS connection's close that nats-py's protocol asks to keep the
    transport half-open (``eof_received``): noise on every command's stderr, dropped here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsEof())

__all__ = [
    "DEFAULT_URL",
    "NatsClient",
    "NatsOptions",
    "Subscription",
    "connect",
    "connect_forever",
    "on_reconnected",
]


@dataclass(frozen=True, kw_only=True)
class NatsOptions:
    """How to reach NATS. ``servers`` lists every node of a cluster."""

    servers: tuple[str, ...] = (DEFAULT_URL,)
    name: str = "harmony-fleet"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    inbox_prefix: str | None = None
    connect_timeout_s: float = 2.0
    reconnect_wait_s: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def with_name(self, name: str) -> NatsOptions:
        return NatsOptions(**{**self.__dict__, "name": name})

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca_file or self.tls_cert_file):
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file:
                ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load TLS files: {exc}") from exc
        return ctx


def inbox_prefix_of_creds(path: str) -> str | None:
    """The inbox prefix a ``.creds`` file's user may subscribe below (``_INBOX.<x>`` for an
    allowed ``_INBOX.<x>.>``), or None when it is not restricted to one.

    Only the JWT's claims are read (not verified: the server does that, and a wrong prefix only
    makes our own requests fail); no crypto is imported for it.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        token = lines[lines.index("-----BEGIN NATS USER JWT-----") + 1]
        body = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        allowed = claims["nats"]["sub"]["allow"]
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None  # unreadable or unrestricted: connect() says what is wrong with the file
    inboxes = [s[: -len(".>")] for s in allowed if s.startswith("_INBOX.") and s.endswith(".>")]
    return inboxes[0] if len(inboxes) == 1 else None


Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]

#: What each connection made by :func:`connect` calls when it is re-established.
_reconnect_listeners: weakref.WeakKeyDictionary[NatsClient, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


def on_reconnected(nc: Any, listener: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``listener()`` whenever ``nc`` is re-established after a disconnection; the
    function that stops it. None when ``nc`` was not made by :func:`connect` (then nothing
    tells: watch ``nc.stats["reconnects"]``)."""
    listeners = _reconnect_listeners.get(nc) if isinstance(nc, NatsClient) else None
    if listeners is None:
        return None
    listeners.append(listener)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(listener)

    return remove


async def connect(
    options: NatsOptions,
    *,
    log: logging.Logger | None = None,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    drops: Drops | None = None,
) -> NatsClient:
    """Connect once; reconnect forever afterwards. Raises :class:`Unavailable` if unreachable.

    Messages nats-py drops for a slow consumer are counted in ``drops`` (a connection of its
    own when not given) and logged rate-limited there, never one line per message.
    """
    log = log or logging.getLogger("harmony_fleet.nats")
    dropped = drops if drops is not None else Drops()

    async def error_cb(exc: Exception) -> None:
        # Permission violations and slow-consumer notices arrive here, not as exceptions (a
        # slow consumer's once per dropped message, on the reading path: counted, kept cheap).
        # While not connected, the errors are the refused connection attempts:
        # disconnected_cb has already said that once.
        if isinstance(exc, nats.errors.SlowConsumerError):
            dropped.record(getattr(exc.sub, "subject", "") or exc.subject, exc.subject)
            return
        level = logging.WARNING if nc.is_connected else logging.DEBUG
        log.log(level, "nats error", extra={"error": repr(exc)})
        if not nc.is_connected:
            refusals.append(exc)

    async def disconnected_cb() -> None:
        log.info("nats disconnected")
        if on_disconnect:
            await on_disconnect()

    async def reconnected_cb() -> None:
        log.info("nats reconnected")
        for listener in list(_reconnect_listeners.get(nc, ())):
            listener()
        if on_reconnect:
            await on_reconnect()

    kwargs: dict[str, Any] = dict(
        servers=list(options.servers),
        name=options.name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=options.reconnect_wait_s,
        connect_timeout=options.connect_timeout_s,
        error_cb=error_cb,
        disconnected_cb=disconnected_cb,
        reconnected_cb=reconnected_cb,
        user=options.user,
        password=options.password,
        token=options.token,
        user_credentials=options.creds_file,
        tls=options.tls_context(),
        inbox_prefix=options.inbox_prefix
        or (inbox_prefix_of_creds(options.creds_file) if options.creds_file else None),
        **options.extra,
    )
    refusals: list[Exception] = []
    nc = NatsClient()
    _reconnect_listeners[nc] = []
    # With max_reconnect_attempts=-1 nats-py would retry the *first* connection forever too;
    # bound it here so a one-shot CLI call fails fast, and let connect_forever do the retrying.
    initial_s = options.connect_timeout_s * len(options.servers) + 1.0
    try:
        await asyncio.wait_for(
            nc.connect(**{k: v for k, v in kwargs.items() if v is not None}), initial_s
        )
    except TimeoutError as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        for refusal in reversed(refusals):
            if (bad := _bad_credentials(refusal, options)) is not None:
                raise bad from exc
        raise Unavailable(f"cannot reach NATS at {', '.join(options.servers)}: timed out") from exc
    except (nats.errors.NoServersError, OSError) as exc:
        raise Unavailable(
            f"cannot reach NATS at {', '.join(options.servers)}: {exc or type(exc).__name__}"
        ) from exc
    except nats.errors.Error as exc:
        raise _bad_credentials(exc, options) or wrap_nats_error(exc, "connect to NATS") from exc
    return nc


def _bad_credentials(exc: BaseException, options: NatsOptions) -> ConfigError | None:
    """The error to give when a connection attempt failed on our credentials or our CA."""
    where = ", ".join(options.servers)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConfigError(
            f"NATS at {where}: its TLS certificate is not signed by the CA in "
            f"{options.tls_ca_file or 'the system store'} ({exc.verify_message})"
        )
    text = str(exc).lower()
    if "authorization violation" in text or "authentication" in text:
        return ConfigError(
            f"NATS at {where} refused the credentials ({options.creds_file or 'none given'}): "
            "missing, revoked or issued by another server"
        )
    if isinstance(exc, nats.errors.SecureConnRequiredError) or "tls required" in text:
        return ConfigError(f"NATS at {where} requires TLS: give its CA (--nats-tls-ca)")
    return None


async def connect_forever(
    options: NatsOptions,
    *,
    log: logging.Logger,
    stop: asyncio.Event | None = None,
    max_backoff_s: float = 10.0,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    drops: Drops | None = None,
) -> NatsClient | None:
    """Retry :func:`connect` with exponential backoff and jitter until it works or ``stop`` is set.

    Returns None only when ``stop`` was set first.
    """
    delay = 0.1
    attempt = 0
    while stop is None or not stop.is_set():
        attempt += 1
        try:
            return await connect(
                options,
                log=log,
                on_disconnect=on_disconnect,
                on_reconnect=on_reconnect,
                drops=drops,
            )
        except Unavailable as exc:
            if attempt == 1 or attempt % 10 == 0:
                log.warning("nats not reachable yet, retrying", extra={"error": str(exc)})
        except ConfigError as exc:
            # Refused credentials or a certificate this host does not accept yet (a clock far
            # off before NTP, a CA being rolled): a long-lived process keeps trying, loudly;
            # exiting would make a supervisor count it as a crash.
            if attempt == 1 or attempt % 10 == 0:
                log.error("nats refused us, retrying", extra={"error": str(exc)})
        wait = delay * (0.5 + random.random())
        delay = min(delay * 2, max_backoff_s)
        if stop is None:
            await asyncio.sleep(wait)
        else:
            await wait_event(stop, wait)
    return None


async def barrier(nc: NatsClient, *, timeout_s: float = 5.0) -> None:
    """Return once the server has processed everything this client sent so far.

    nats-py's ``flush()`` alone is not enough: it writes its PING straight to the socket, ahead of
    commands still waiting in the client's buffer (measured with nats-py 2.16: a SUB queued
    before ``flush()`` reached the server after the PONG). So first wait until nats-py's flusher
    has handed that buffer to the socket (``pending_data_size`` back to 0), then ``flush()``: the
    PING follows those commands on the same socket, and the server answers it in order.

    No message to ourselves is involved, so it works without echo (``no_echo``: the agent's
    connection) and with credentials that may subscribe to no inbox at all.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    # nats-py exposes no event for its flusher: look at its buffer (empty at once, usually).
    while nc.pending_data_size > 0 and nc.is_connected and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    try:
        await nc.flush(timeout=max(1, math.ceil(deadline - loop.time())))  # whole seconds
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"NATS did not answer a barrier within {timeout_s} s") from exc
