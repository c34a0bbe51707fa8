"""python-tuf's exceptions become harmony-fleet errors naming the attack class."""

from __future__ import annotations

import pytest
from tuf.api import exceptions as tuf_errors

from harmony_fleet.adapters.tuf.errors import untrusted
from harmony_fleet.errors import UNTRUSTED_REASONS, DownloadInterrupted, Untrusted


@pytest.mark.parametrize(
    ("exc", "what", "reason"),
    [
        (tuf_errors.UnsignedMetadataError("targets"), "metadata refresh", "bad signature"),
        (tuf_errors.ExpiredMetadataError("timestamp.json is expired"), "x", "expired metadata"),
        (
            tuf_errors.BadVersionNumberError("New timestamp version 1 must be >= 3"),
            "x",
            "metadata rollback",
        ),
        (tuf_errors.BadVersionNumberError("Expected targets v3, got v2."), "x", "mix-and-match"),
        (
            tuf_errors.LengthOrHashMismatchError("hash"),
            "target harmony-fleet-agent-2.pyz",
            "hash mismatch",
        ),
        (tuf_errors.LengthOrHashMismatchError("hash"), "metadata refresh", "mix-and-match"),
        (tuf_errors.DownloadLengthMismatchError("too long"), "target x", "length exceeded"),
        (tuf_errors.RepositoryError("odd"), "x", "untrusted metadata"),
        (tuf_errors.DownloadHTTPError("gone", 404), "target x", "artifact missing"),
    ],
)
def test_each_refusal_names_its_attack(exc: Exception, what: str, reason: str) -> None:
    err = untrusted(exc, what)
    assert isinstance(err, Untrusted) and err.reason == reason
    assert str(err).startswith(reason) and reason in UNTRUSTED_REASONS


def test_a_broken_transfer_stays_temporary() -> None:
    assert isinstance(untrusted(tuf_errors.DownloadError("gone"), "x"), DownloadInterrupted)
    missing = untrusted(tuf_errors.DownloadHTTPError("gone", 404), "timestamp")
    assert isinstance(missing, Untrusted) and missing.reason == "untrusted metadata"
