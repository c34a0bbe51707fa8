"""Turning nats-py errors into harmony-fleet's tree, at the point where they enter.

Every NATS call of the package (KV, the log stream, commands, connecting) wraps what nats-py
raises with :func:`wrap_nats_error`, so callers decide "retry later" versus "give up" by
catching :class:`~harmony_fleet.errors.TemporaryError` or
:class:`~harmony_fleet.errors.PermanentError` and never import nats-py to do so. The table is
the one place that decides it; it is ordered most specific first, and a test walks every
exception class nats-py defines to check that each lands on one of ours.

Two rules the table cannot express alone:

* A timeout on a **write** may still be applied once the client reconnects (measured here: a
  ``kv.put`` made while the server is away can raise and land later), so it becomes
  :class:`~harmony_fleet.errors.OutcomeUnknown` instead of :class:`~harmony_fleet.errors.Timeout`.
* A request the server answered with 400 (``BadRequestError``: a value larger than the bucket
  takes, a wrong configuration) will be answered the same way again: it is permanent
  (:class:`~harmony_fleet.errors.Refused`). A writer that retried it would retry for ever.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors

from harmony_fleet.errors import (
    ConfigError,
    Conflict,
    FleetError,
    NotFound,
    OutcomeUnknown,
    Refused,
    Timeout,
    Unavailable,
)

log = logging.getLogger(__name__)

__all__ = ["NATS_ERROR_MAP", "wrap_nats_error"]

_js = nats.js.errors
_core = nats.errors

NATS_ERROR_MAP: tuple[tuple[type[BaseException], type[FleetError], str], ...] = (
    # -- JetStream and KV: most specific first ---------------------------------------------
    (_js.KeyWrongLastSequenceError, Conflict, "another writer changed the key first"),
    (_js.BucketNotFoundError, NotFound, "no such bucket"),
    (_js.KeyDeletedError, NotFound, "the key was deleted"),
    (_js.KeyNotFoundError, NotFound, "no such key"),
    (_js.NoKeysError, NotFound, "the bucket holds no keys"),
    (_js.ObjectNotFoundError, NotFound, "no such object"),
    (_js.ObjectDeletedError, NotFound, "the object was deleted"),
    (_js.KeyHistoryTooLargeError, ConfigError, "KV history above 64"),
    (_js.KeyValueLimitMarkerTTLNotSupportedError, ConfigError, "the server is too old"),
    (_js.KeyValueError, Unavailable, "KV error"),
    (_js.ConsumerInvalidResetError, Unavailable, "consumer reset refused"),
    (_js.BadRequestError, Refused, "the server refused the request"),
    (_js.NotFoundError, NotFound, "not found"),
    (_js.ServiceUnavailableError, Unavailable, "JetStream unavailable"),
    (_js.ServerError, Unavailable, "JetStream server error"),
    (_js.BadBucketError, ConfigError, "not a KV bucket"),
    (_js.APIError, Unavailable, "JetStream API error"),
    (_js.NoStreamResponseError, Unavailable, "no stream answered (leader election?)"),
    (_js.TooManyStalledMsgsError, Unavailable, "too many stalled messages"),
    (_js.FetchTimeoutError, Timeout, "fetch timed out"),
    (_js.ConsumerSequenceMismatchError, Unavailable, "consumer sequence gap"),
    (_js.InvalidKeyError, ConfigError, "invalid key"),
    (_js.InvalidBucketNameError, ConfigError, "invalid bucket name"),
    (_js.InvalidObjectNameError, ConfigError, "invalid object name"),
    (_js.BadObjectMetaError, ConfigError, "bad object metadata"),
    (_js.LinkIsABucketError, ConfigError, "the link names a bucket"),
    (_js.DigestMismatchError, Refused, "object digest mismatch"),
    (_js.ObjectAlreadyExists, Conflict, "the object exists"),
    (_js.Error, Unavailable, "JetStream error"),
    # -- core NATS -----------------------------------------------------------------------------
    (_core.FlushTimeoutError, Timeout, "flush timed out"),
    (_core.DrainTimeoutError, Timeout, "drain timed out"),
    (_core.TimeoutError, Timeout, "timed out"),
    (_core.NoRespondersError, Unavailable, "no responders"),
    (_core.UnexpectedEOF, Unavailable, "connection lost"),
    (_core.StaleConnectionError, Unavailable, "stale connection"),
    (_core.OutboundBufferLimitError, Unavailable, "outbound buffer full"),
    (_core.ConnectionClosedError, Unavailable, "not connected to NATS"),
    (_core.ConnectionDrainingError, Unavailable, "the connection is draining"),
    (_core.ConnectionReconnectingError, Unavailable, "reconnecting to NATS"),
    (_core.NoServersError, Unavailable, "no NATS server reachable"),
    (_core.SlowConsumerError, Unavailable, "slow consumer"),
    (_core.JsonParseError, Unavailable, "unparsable server answer"),
    (_core.ProtocolError, Unavailable, "NATS protocol error"),
    (_core.MaxPayloadError, Refused, "larger than the server's max_payload"),
    (_core.AuthorizationError, Refused, "not authorised"),
    (_core.InvalidUserCredentialsError, ConfigError, "invalid credentials"),
    (_core.SecureConnRequiredError, ConfigError, "the server requires TLS"),
    (_core.SecureConnWantedError, ConfigError, "the client wants TLS, the server has none"),
    (_core.SecureConnFailedError, ConfigError, "TLS handshake failed"),
    (_core.ServerNotInPoolError, ConfigError, "server not in the pool"),
    (_core.BadSubscriptionError, ConfigError, "bad subscription"),
    (_core.BadSubjectError, ConfigError, "bad subject"),
    (_core.BadHeaderError, ConfigError, "bad header"),
    (_core.BadTimeoutError, ConfigError, "bad timeout"),
    (_core.InvalidCallbackTypeError, ConfigError, "callbacks must be coroutines"),
    (_core.NotJSMessageError, ConfigError, "not a JetStream message"),
    (_core.MsgAlreadyAckdError, ConfigError, "message already acknowledged"),
    (_core.Error, Unavailable, "NATS error"),
    # -- the standard library, as nats-py lets it through ------------------------------------
    (asyncio.TimeoutError, Timeout, "timed out"),
    (TimeoutError, Timeout, "timed out"),
    (ConnectionError, Unavailable, "connection failed"),
    (OSError, Unavailable, "I/O error"),
)
"""(nats-py class, our class, what it means): the first row whose class matches wins."""


def wrap_nats_error(exc: BaseException, what: str, *, write: bool = False) -> FleetError:
    """Our error for ``exc`` raised while doing ``what``; raise it ``from exc``.

    ``write``: the call changed something on the server, so a timeout is an unknown outcome.
    An exception that is already ours is returned as it is.
    """
    if isinstance(exc, FleetError):
        return exc
    for cls, ours, meaning in NATS_ERROR_MAP:
        if isinstance(exc, cls):
            try:
                detail = str(exc).strip()
            except Exception:  # a nats-py __str__ that needs attributes it was not given
                detail = ""
            text = f"{what}: {meaning}" + (f" ({detail})" if detail and detail != meaning else "")
            if ours is Timeout and write:
                return OutcomeUnknown(f"{what}: timed out; the write may still be applied")
            if ours is Refused:
                return Refused(text, code="nats_refused")
            return ours(text)
    log.warning("unmapped error from NATS", extra={"type": type(exc).__name__, "what": what})
    return Unavailable(f"{what}: {type(exc).__name__}: {exc}")
