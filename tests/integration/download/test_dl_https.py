"""Artifact transport against real servers: an HTTPS server (a private CA made with the fleet's
own PKI code) and a plain HTTP server, both real sockets; no redirect may leave https, and no
token in a URL reaches an error or a log line."""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from dl_helpers import FAST, Artifact
from pytest_httpserver import HTTPServer

from harmony_fleet.adapters.http import ArtifactAccess, download
from harmony_fleet.adapters.nats.pki import make_ca_and_server_cert
from harmony_fleet.errors import DownloadRejected, FleetError

TOKEN = "X-Amz-Signature=S3CR3T-T0KEN"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("artifact-pki")
    make_ca_and_server_cert(d)  # a CA, and a server certificate for localhost and 127.0.0.1
    return d


@pytest.fixture
def https_server(pki: Path) -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server-key.pem")
    server = HTTPServer(host="127.0.0.1", ssl_context=context)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def trusted(pki: Path) -> ArtifactAccess:
    return ArtifactAccess(ca_file=str(pki / "ca.pem"))


async def test_a_full_download_over_https_trusting_the_artifact_ca(
    https_server: HTTPServer, trusted: ArtifactAccess, artifact: Artifact, dest: Path
) -> None:
    https_server.expect_request("/a.bin").respond_with_data(artifact.data)
    url = https_server.url_for("/a.bin") + "?" + TOKEN
    assert url.startswith("https://")
    await download(url, dest, artifact.sha256, artifact.size, policy=FAST, access=trusted)
    assert dest.read_bytes() == artifact.data


async def test_without_the_artifact_ca_the_private_certificate_is_refused(
    https_server: HTTPServer, artifact: Artifact, dest: Path
) -> None:
    https_server.expect_request("/a.bin").respond_with_data(artifact.data)
    url = https_server.url_for("/a.bin") + "?" + TOKEN
    with pytest.raises(DownloadRejected, match="TLS certificate verification failed") as info:
        await download(url, dest, artifact.sha256, policy=FAST)
    assert "S3CR3T" not in str(info.value)


@pytest.mark.parametrize("allow_http", [False, True])
async def test_a_redirect_from_https_to_a_real_http_server_is_refused_before_it_is_asked(
    https_server: HTTPServer,
    httpserver: HTTPServer,
    pki: Path,
    artifact: Artifact,
    dest: Path,
    allow_http: bool,
) -> None:
    """On the first hop or a later one; with the http opt-in too; the http server never sees a
    request (the token would have crossed the network in clear)."""
    httpserver.expect_request("/a.bin").respond_with_data(artifact.data)
    plain = httpserver.url_for("/a.bin") + "?" + TOKEN
    https_server.expect_request("/hop").respond_with_data(
        "", status=302, headers={"Location": plain}
    )
    https_server.expect_request("/start").respond_with_data(
        "", status=301, headers={"Location": https_server.url_for("/hop") + "?" + TOKEN}
    )
    access = ArtifactAccess(ca_file=str(pki / "ca.pem"), allow_http=allow_http)
    policy = dataclasses.replace(FAST, max_retries=3)
    with pytest.raises(DownloadRejected, match="leaves https for plain http") as info:
        await download(
            https_server.url_for("/start") + "?" + TOKEN,
            dest,
            artifact.sha256,
            policy=policy,
            access=access,
        )
    assert httpserver.log == []
    assert [req.path for req, _ in https_server.log] == ["/start", "/hop"]  # and no retry
    assert "S3CR3T" not in str(info.value)
    assert not dest.exists()


async def test_a_redirect_from_https_to_https_is_followed(
    https_server: HTTPServer, trusted: ArtifactAccess, artifact: Artifact, dest: Path
) -> None:
    https_server.expect_request("/old").respond_with_data(
        "", status=307, headers={"Location": "/new"}
    )
    https_server.expect_request("/new").respond_with_data(artifact.data)
    await download(https_server.url_for("/old"), dest, artifact.sha256, policy=FAST, access=trusted)
    assert dest.read_bytes() == artifact.data


async def test_plain_http_to_another_host_is_refused_before_any_request(
    artifact: Artifact, dest: Path
) -> None:
    with pytest.raises(DownloadRejected, match="--allow-http-artifacts"):
        await download("http://artifacts.example/a.bin", dest, artifact.sha256, policy=FAST)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


async def test_a_token_in_the_query_reaches_no_log_line_and_no_error(
    https_server: HTTPServer,
    trusted: ArtifactAccess,
    artifact: Artifact,
    dest: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Retries (503), then a final 404: every message and log record shows the URL redacted."""
    https_server.expect_ordered_request("/a.bin").respond_with_data("busy", status=503)
    https_server.expect_ordered_request("/a.bin").respond_with_data("gone", status=404)
    caplog.set_level(logging.DEBUG, logger="harmony_fleet")
    url = https_server.url_for("/a.bin") + "?" + TOKEN
    with pytest.raises(FleetError) as info:
        await download(url, dest, artifact.sha256, policy=FAST, access=trusted)
    assert "404" in str(info.value)
    assert "/a.bin?…" in str(info.value)
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retried, caplog.text
    ours = [r for r in caplog.records if r.name.startswith("harmony_fleet")]  # not the server's
    assert ours
    for record in ours:
        assert "S3CR3T" not in record.getMessage()
        assert "S3CR3T" not in repr(record.__dict__)
