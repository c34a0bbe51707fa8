"""Every httpx and OS error that enters the downloader leaves it as one of ours."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import httpx
import pytest
from dl_helpers import FAST

from harmony_fleet.adapters.http import download
from harmony_fleet.adapters.http.wrap import HTTPX_ERROR_MAP, wrap_httpx_error
from harmony_fleet.errors import (
    ConfigError,
    DownloadRejected,
    FleetError,
    PermanentError,
    TemporaryError,
)

SHA = hashlib.sha256(b"x").hexdigest()

HTTPX_ERRORS = sorted(
    (
        obj
        for _, obj in inspect.getmembers(httpx, inspect.isclass)
        if issubclass(obj, httpx.HTTPError) or obj is httpx.InvalidURL  # no HTTPError subclass
    ),
    key=lambda c: c.__name__,
)


def test_every_httpx_error_class_is_in_the_table() -> None:
    handled = {cls for cls, _ in HTTPX_ERROR_MAP}
    assert set(HTTPX_ERRORS) <= handled, set(HTTPX_ERRORS) - handled
    assert len(HTTPX_ERRORS) >= 20  # the walk below really walks something


def _make(cls: type[Exception]) -> Exception:
    request = httpx.Request("GET", "https://example.invalid/a")
    if issubclass(cls, httpx.RequestError | httpx.TooManyRedirects):
        return cls("boom", request=request)
    if cls is httpx.HTTPStatusError:
        return cls("boom", request=request, response=httpx.Response(418, request=request))
    return cls("boom")


@pytest.mark.parametrize("httpx_cls", HTTPX_ERRORS, ids=lambda c: c.__name__)
async def test_httpx_error_raised_by_the_transport_is_wrapped(
    httpx_cls: type[Exception], tmp_path: Path
) -> None:
    expected = next(ours for cls, ours in HTTPX_ERROR_MAP if issubclass(httpx_cls, cls))

    def handler(request: httpx.Request) -> httpx.Response:
        raise _make(httpx_cls)

    policy = dataclasses.replace(FAST, max_retries=0)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(FleetError) as info:
            await download(
                "https://example.invalid/a", tmp_path / "a", SHA, client=client, policy=policy
            )
    assert type(info.value) is expected
    assert isinstance(info.value.__cause__, httpx_cls)
    assert isinstance(info.value, PermanentError | TemporaryError)


def test_wrap_names_the_url_and_keeps_the_detail() -> None:
    err = wrap_httpx_error(httpx.ConnectError("refused"), "http://h/a")
    assert "http://h/a" in str(err) and "refused" in str(err)


async def test_unreachable_server_is_temporary(tmp_path: Path) -> None:
    policy = dataclasses.replace(FAST, max_retries=1)
    with pytest.raises(TemporaryError) as info:
        await download("http://127.0.0.1:1/a", tmp_path / "a", SHA, policy=policy)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a", "file:///etc/passwd", "http:///a"])
async def test_an_unusable_scheme_is_a_rejected_download(tmp_path: Path, url: str) -> None:
    """The URL is part of the request, like a 404: not the device's configuration."""
    with pytest.raises(DownloadRejected):
        await download(url, tmp_path / "a", SHA, policy=FAST)
    assert not (tmp_path / "a").exists()


async def test_malformed_url_is_a_rejected_download(tmp_path: Path) -> None:
    with pytest.raises(DownloadRejected):
        await download("http://[::1", tmp_path / "a", SHA, policy=FAST)


def test_httpx_url_errors_are_rejected_downloads() -> None:
    for exc in (httpx.UnsupportedProtocol("file"), httpx.InvalidURL("http://[::1")):
        assert type(wrap_httpx_error(exc, "u")) is DownloadRejected


async def test_unwritable_destination_is_wrapped(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError) as info:
        await download("http://127.0.0.1:1/a", blocker / "sub" / "a", SHA, policy=FAST)
    assert isinstance(info.value.__cause__, OSError)


async def test_bad_digest_is_rejected_before_anything(tmp_path: Path) -> None:
    with pytest.raises(DownloadRejected, match="SHA-256"):
        await download("http://127.0.0.1:1/a", tmp_path / "a", "abc", policy=FAST)
    assert list(tmp_path.iterdir()) == []
