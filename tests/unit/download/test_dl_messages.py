"""What a person reads when a download cannot be had: no made-up numbers, URLs checked first."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from harmony_fleet.adapters.http.policy import check_url
from harmony_fleet.adapters.http.wrap import wrap_os_error
from harmony_fleet.errors import DownloadRejected, InsufficientSpace


def test_out_of_space_with_an_unknown_size_says_so() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    err = wrap_os_error(full, Path("/opt/agent/versions/x.part"))
    assert isinstance(err, InsufficientSpace)
    assert err.needed is None and err.free is None
    assert str(err) == (
        "not enough free space at /opt/agent/versions/x.part: "
        "the size needed is unknown, free space unknown"
    )


def test_out_of_space_with_known_figures_names_them() -> None:
    err = InsufficientSpace("/opt", 2048, 1024)
    assert str(err) == "not enough free space at /opt: need 2048 bytes, 1024 free"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "FILE:///x", "ftp://h/a", "h/a", "", "http:///no-host", "http://[::1"],
)
def test_check_url_refuses_what_no_download_may_use(url: str) -> None:
    with pytest.raises(DownloadRejected):
        check_url(url)


@pytest.mark.parametrize("url", ["http://h/a", "HTTPS://h:8443/a?b=c", "http://127.0.0.1:1/a"])
def test_check_url_lets_http_through(url: str) -> None:
    check_url(url)
