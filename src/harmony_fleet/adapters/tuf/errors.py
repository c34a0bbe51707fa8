"""python-tuf's exceptions, wrapped where they enter: :func:`untrusted` names the attack class."""

from __future__ import annotations

import logging

from tuf.api import exceptions as tuf_errors

from harmony_fleet.errors import DownloadInterrupted, FleetError, Untrusted

log = logging.getLogger(__name__)


def untrusted(exc: Exception, what: str) -> FleetError:
    """The harmony-fleet error for ``exc`` raised by ngclient while doing ``what``.

    A verification failure becomes :class:`Untrusted` whose reason names the attack it stopped;
    a download that broke off (NATS or the mirror away) stays a temporary error.
    """
    text = f"{what}: {exc}"
    match exc:
        case tuf_errors.UnsignedMetadataError():
            return Untrusted("bad signature", text)
        case tuf_errors.ExpiredMetadataError():
            return Untrusted("expired metadata", text)
        case tuf_errors.BadVersionNumberError() if str(exc).startswith("Expected"):
            # a file whose version differs from what the signed file above it names
            return Untrusted("mix-and-match", text)
        case tuf_errors.BadVersionNumberError():
            return Untrusted("metadata rollback", text)
        case tuf_errors.LengthOrHashMismatchError() if "target" in what:
            return Untrusted("hash mismatch", text)
        case tuf_errors.LengthOrHashMismatchError():
            return Untrusted("mix-and-match", text)
        case tuf_errors.DownloadLengthMismatchError():
            return Untrusted("length exceeded", text)
        case tuf_errors.RepositoryError():
            return Untrusted("untrusted metadata", text)
        case tuf_errors.DownloadHTTPError() if exc.status_code in {403, 404} and "target" in what:
            # signed, but its bytes are not where the metadata says: the store is out of step
            return Untrusted("artifact missing", f"{text} (not in the artifact store)")
        case tuf_errors.DownloadHTTPError() if exc.status_code in {403, 404}:
            return Untrusted("untrusted metadata", f"{text} (missing from the repository)")
        case tuf_errors.DownloadError():
            return DownloadInterrupted(text)
    if isinstance(exc, FleetError):
        return exc
    log.error("unexpected error from the TUF client", extra={"error": repr(exc)})
    return Untrusted("untrusted metadata", text)
