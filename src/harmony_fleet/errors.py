"""One exception tree for harmony-fleet, split by what the caller should do.

Every error the package raises derives from :class:`FleetError`. Below it, the tree is split
by the caller's next move, not by where the error came from::

    FleetError
    ├── PermanentError            retrying the same thing will fail the same way
    │   ├── InvalidMessage        a wire message failed strict decoding (names the field)
    │   ├── ConfigError           a flag, file or environment value is wrong
    │   ├── NotFound              the device, key or artifact does not exist
    │   ├── Refused               the other side understood and said no
    │   │   └── Deposed           this operator lost the operator lease: it writes nothing
    │   ├── DownloadRejected      the artifact itself is wrong (checksum, size, 4xx)
    │   │   ├── IntegrityError    SHA-256 or size mismatch: expected and actual given
    │   │   ├── TooLarge          the body is larger than declared
    │   │   ├── HTTPStatusError   a 4xx the server will keep answering
    │   │   ├── InsufficientSpace not enough free disk for the artifact
    │   │   └── Untrusted         the signed release metadata does not vouch for it (reason)
    │   ├── LayoutBroken          the agent's folder is beyond self-heal (the on-disk layer)
    │   ├── SpawnError            a process could not be started at all (process mode)
    │   ├── ProtocolViolation     an event the upgrade machine's table has no entry for
    │   └── TableError            a handler moved to a state its table entry does not declare
    └── TemporaryError            the same call may succeed later (``retry_after`` hints when)
        ├── Unavailable           NATS or an HTTP server cannot be reached, no responders
        │   └── SystemdUnavailable  this machine runs no systemd (or lacks its tools)
        ├── Timeout               no answer within the deadline
        ├── OutcomeUnknown        a write timed out and may still have been applied
        ├── Conflict              a compare-and-set lost a race: re-read and decide again
        ├── DownloadInterrupted   the transfer broke off (early close, stall, 5xx)
        ├── DiskError             a file operation failed (full disk, I/O, permissions)
        └── SystemdError          a systemd tool exited non-zero (``stderr`` says why)

The classes below the root that are not defined here live beside the code that raises them
(``LayoutBroken`` and ``DiskError`` with the on-disk layer, ``SpawnError`` with the process
runner, the two systemd errors with ``systemctl``, the machine's two in ``core.upgrade.machine``);
``tests/unit/test_exports.py`` checks that every subclass in the package is drawn here, under
its parent.

Third-party errors (nats-py, httpx, python-tuf, OSError) are wrapped where they enter, with
``raise Mapped(...) from exc``, so callers never need to import a dependency to catch ours.
"""

from __future__ import annotations


class FleetError(Exception):
    """Root of every error harmony-fleet raises on purpose."""


class PermanentError(FleetError):
    """Do not retry as-is: the input, the artifact or the answer has to change first."""


class TemporaryError(FleetError):
    """Retrying may help. ``retry_after`` (seconds) is a hint, ``None`` when unknown."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidMessage(PermanentError):
    """A message on the wire (or a file in a wire format) failed strict decoding.

    ``field`` is a JSON path such as ``$.agent_version`` or ``$`` for the whole message.
    """

    def __init__(self, field: str, reason: str, *, type_name: str = "message") -> None:
        super().__init__(f"invalid {type_name}: {field}: {reason}")
        self.field = field
        self.reason = reason
        self.type_name = type_name


class ConfigError(PermanentError):
    """A flag, configuration file or environment variable is wrong; the text says which."""


class NotFound(PermanentError):
    """The device, key, version or artifact asked for does not exist."""


class Refused(PermanentError):
    """The other side understood the request and declined it (``code`` says why)."""

    def __init__(self, message: str, *, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


class Deposed(Refused):
    """This operator no longer holds the operator lease (ADR-023): its write is not made."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="deposed")


class DownloadRejected(PermanentError):
    """The artifact cannot be had as asked: retrying the same URL and hash will not help."""


class IntegrityError(DownloadRejected):
    """The bytes received do not match the expected SHA-256 or size."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what} mismatch: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class Untrusted(DownloadRejected):
    """A release the device will not install: the signed metadata (TUF) does not vouch for it.

    ``reason`` names the attack class the check stopped, one of :data:`UNTRUSTED_REASONS`
    (``unsigned target``, ``bad signature``, ``expired metadata``, ``metadata rollback``,
    ``mix-and-match``, ``length exceeded``, ``hash mismatch``, ``downgrade below floor``,
    ``below min_version``, ``no trust root``, ``untrusted metadata``, ``artifact missing``: a
    signed target whose bytes the artifact store does not hold); the message starts with it.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


#: The reasons an :class:`Untrusted` names (the upgrade status's ``error_detail`` starts with one).
UNTRUSTED_REASONS = (
    "unsigned target",
    "bad signature",
    "expired metadata",
    "metadata rollback",
    "mix-and-match",
    "length exceeded",
    "hash mismatch",
    "downgrade below floor",
    "below min_version",
    "no trust root",
    "untrusted metadata",
    "artifact missing",
)


class TooLarge(DownloadRejected):
    """The server sent (or announced) more bytes than the declared size."""


class HTTPStatusError(DownloadRejected):
    """The server answered with a status that retrying will not change (most 4xx)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"HTTP {status} for {url}")
        self.url = url
        self.status = status


class InsufficientSpace(DownloadRejected):
    """The destination filesystem lacks the room the artifact needs.

    ``needed`` and ``free`` are bytes, or None when unknown (a body of unannounced size that
    filled the disk half-way; a filesystem that could not be asked).
    """

    def __init__(self, path: str, needed: int | None, free: int | None) -> None:
        need = f"need {needed} bytes" if needed is not None else "the size needed is unknown"
        have = f"{free} free" if free is not None else "free space unknown"
        super().__init__(f"not enough free space at {path}: {need}, {have}")
        self.path = path
        self.needed = needed
        self.free = free


class Unavailable(TemporaryError):
    """A server (NATS, HTTP) cannot be reached, or nobody answers on the subject."""


class Timeout(TemporaryError):
    """No answer within the deadline."""


class OutcomeUnknown(TemporaryError):
    """A write timed out: it may or may not have been applied. Re-read before deciding."""


class Conflict(TemporaryError):
    """A compare-and-set lost a race with another writer: re-read and decide again."""


class DownloadInterrupted(TemporaryError):
    """The transfer broke off (early close, stall, 5xx, connection error)."""


__all__ = [
    "UNTRUSTED_REASONS",
    "ConfigError",
    "Conflict",
    "Deposed",
    "DownloadInterrupted",
    "DownloadRejected",
    "FleetError",
    "HTTPStatusError",
    "InsufficientSpace",
    "IntegrityError",
    "InvalidMessage",
    "NotFound",
    "OutcomeUnknown",
    "PermanentError",
    "Refused",
    "TemporaryError",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "Untrusted",
]
