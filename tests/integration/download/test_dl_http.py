"""download() against pytest-httpserver: well-formed answers, statuses, redirects, TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dl_helpers import FAST, Artifact
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from harmony_fleet.adapters.http import DownloadProgress, download
from harmony_fleet.adapters.http.downloader import meta_path, part_path
from harmony_fleet.errors import (
    DownloadInterrupted,
    DownloadRejected,
    HTTPStatusError,
    IntegrityError,
    TemporaryError,
    TooLarge,
)


def ranged(data: bytes):  # type: ignore[no-untyped-def]
    """A handler that answers Range requests like a real static file server."""

    def handler(request: Request) -> Response:
        return Response(data, mimetype="application/octet-stream").make_conditional(
            request, accept_ranges=True, complete_length=len(data)
        )

    return handler


async def test_happy_path(httpserver: HTTPServer, artifact: Artifact, dest: Path) -> None:
    httpserver.expect_request("/a.bin").respond_with_handler(ranged(artifact.data))
    seen: list[DownloadProgress] = []

    got = await download(
        httpserver.url_for("/a.bin"),
        dest,
        artifact.sha256,
        artifact.size,
        on_progress=seen.append,
        policy=FAST,
    )

    assert got == dest
    assert dest.read_bytes() == artifact.data
    assert not part_path(dest).exists()
    assert not meta_path(dest).exists()
    assert len(httpserver.log) == 1
    request = httpserver.log[0][0]
    assert "Range" not in request.headers
    assert request.headers.get("Accept-Encoding") == "identity"
    final = seen[-1]
    assert final.bytes_done == final.bytes_total == artifact.size
    assert final.retries == 0 and final.rate_bps > 0
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        final.bytes_done = 0  # type: ignore[misc]


async def test_dest_already_present_makes_no_request(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    dest.parent.mkdir(parents=True)
    dest.write_bytes(artifact.data)
    got = await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, artifact.size)
    assert got == dest
    assert httpserver.log == []


async def test_dest_with_other_content_is_replaced(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old version")
    httpserver.expect_request("/a.bin").respond_with_handler(ranged(artifact.data))
    await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=FAST)
    assert dest.read_bytes() == artifact.data
    assert len(httpserver.log) == 1


async def test_corrupt_body_is_rejected_and_cleaned_up(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    corrupt = bytearray(artifact.data)
    corrupt[1_000_000] ^= 0xFF
    httpserver.expect_request("/a.bin").respond_with_data(bytes(corrupt))

    with pytest.raises(IntegrityError) as info:
        await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=FAST)

    assert info.value.what == "sha256"
    assert info.value.expected == artifact.sha256
    assert info.value.actual == hashlib.sha256(corrupt).hexdigest()
    assert not dest.exists() and not part_path(dest).exists() and not meta_path(dest).exists()
    assert len(httpserver.log) == 1  # a fresh download that fails to verify is final


async def test_declared_size_mismatch_is_rejected_before_the_body(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_request("/a.bin").respond_with_data(artifact.data)
    with pytest.raises(IntegrityError) as info:
        await download(
            httpserver.url_for("/a.bin"), dest, artifact.sha256, artifact.size + 1, policy=FAST
        )
    assert info.value.what == "size"
    assert (info.value.expected, info.value.actual) == (
        str(artifact.size + 1),
        str(artifact.size),
    )


async def test_announced_body_larger_than_declared_is_refused(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_request("/a.bin").respond_with_data(artifact.data)
    with pytest.raises(TooLarge):
        await download(
            httpserver.url_for("/a.bin"), dest, artifact.sha256, artifact.size - 1, policy=FAST
        )
    assert not part_path(dest).exists()
    assert len(httpserver.log) == 1


async def test_404_is_final_after_one_request(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_request("/a.bin").respond_with_data("nope", status=404)
    policy = dataclasses.replace(FAST, max_retries=10)
    with pytest.raises(HTTPStatusError) as info:
        await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=policy)
    assert info.value.status == 404
    assert isinstance(info.value, DownloadRejected)
    assert len(httpserver.log) == 1


async def test_500_then_success(httpserver: HTTPServer, artifact: Artifact, dest: Path) -> None:
    httpserver.expect_ordered_request("/a.bin").respond_with_data("boom", status=500)
    httpserver.expect_ordered_request("/a.bin").respond_with_data(artifact.data)
    seen: list[DownloadProgress] = []
    await download(
        httpserver.url_for("/a.bin"), dest, artifact.sha256, on_progress=seen.append, policy=FAST
    )
    assert dest.read_bytes() == artifact.data
    assert [r.status_code for _, r in httpserver.log] == [500, 200]
    assert seen[-1].retries == 1


async def test_500_forever_gives_up_after_max_retries(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_request("/a.bin").respond_with_data("boom", status=503)
    policy = dataclasses.replace(FAST, max_retries=3)
    with pytest.raises(DownloadInterrupted):
        await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=policy)
    assert len(httpserver.log) == 4


async def test_429_honours_retry_after(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_ordered_request("/a.bin").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/a.bin").respond_with_data(artifact.data)
    started = time.monotonic()
    await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=FAST)
    # FAST's own backoff is at most 0.05 s; only Retry-After explains a 1 s gap.
    assert time.monotonic() - started >= 0.95
    assert [r.status_code for _, r in httpserver.log] == [429, 200]


async def test_retry_after_is_capped(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_ordered_request("/a.bin").respond_with_data(
        "", status=503, headers={"Retry-After": "3600"}
    )
    httpserver.expect_ordered_request("/a.bin").respond_with_data(artifact.data)
    policy = dataclasses.replace(FAST, retry_after_max_s=0.05)
    await asyncio.wait_for(
        download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=policy), 20
    )
    assert dest.read_bytes() == artifact.data


async def test_retry_after_beyond_the_deadline_fails_at_once(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_request("/a.bin").respond_with_data(
        "", status=429, headers={"Retry-After": "120"}
    )
    policy = dataclasses.replace(FAST, deadline_s=10.0, retry_after_max_s=600.0)
    started = time.monotonic()
    with pytest.raises(TemporaryError) as info:
        await download(httpserver.url_for("/a.bin"), dest, artifact.sha256, policy=policy)
    assert time.monotonic() - started < 5
    assert "429" in str(info.value)
    assert len(httpserver.log) == 1


async def test_redirect_is_followed(httpserver: HTTPServer, artifact: Artifact, dest: Path) -> None:
    httpserver.expect_request("/old").respond_with_data(
        "", status=302, headers={"Location": "/new"}
    )
    httpserver.expect_request("/new").respond_with_data(artifact.data)
    await download(httpserver.url_for("/old"), dest, artifact.sha256, policy=FAST)
    assert dest.read_bytes() == artifact.data


async def test_redirect_loop_is_a_clear_permanent_error(
    httpserver: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=302, headers={"Location": "/a"})
    policy = dataclasses.replace(FAST, max_redirects=4)
    with pytest.raises(DownloadRejected, match="TooManyRedirects") as info:
        await download(httpserver.url_for("/a"), dest, artifact.sha256, policy=policy)
    assert isinstance(info.value.__cause__, httpx.TooManyRedirects)
    assert len(httpserver.log) == 5  # the first request + 4 redirects, and no retry


async def test_auth_header_is_sent(httpserver: HTTPServer, artifact: Artifact, dest: Path) -> None:
    httpserver.expect_request(
        "/a.bin", headers={"Authorization": "Bearer s3cret"}
    ).respond_with_data(artifact.data)
    await download(
        httpserver.url_for("/a.bin"),
        dest,
        artifact.sha256,
        headers={"Authorization": "Bearer s3cret"},
        policy=FAST,
    )
    assert dest.read_bytes() == artifact.data


# --- HTTPS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_server(tls_files: tuple[Path, Path]) -> Iterator[HTTPServer]:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = HTTPServer(host="127.0.0.1", ssl_context=context)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


async def test_https_with_trusted_certificate(
    https_server: HTTPServer, tls_files: tuple[Path, Path], artifact: Artifact, dest: Path
) -> None:
    https_server.expect_request("/a.bin").respond_with_data(artifact.data)
    url = https_server.url_for("/a.bin")
    assert url.startswith("https://")
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=tls_files[0])) as c:
        await download(url, dest, artifact.sha256, client=c, policy=FAST)
    assert dest.read_bytes() == artifact.data


async def test_https_with_untrusted_certificate_is_permanent(
    https_server: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    https_server.expect_request("/a.bin").respond_with_data(artifact.data)
    policy = dataclasses.replace(FAST, max_retries=50, backoff_initial_s=1.0)
    started = time.monotonic()
    with pytest.raises(DownloadRejected, match="TLS certificate verification failed"):
        await download(https_server.url_for("/a.bin"), dest, artifact.sha256, policy=policy)
    assert time.monotonic() - started < 5  # not retried
    assert https_server.log == []
