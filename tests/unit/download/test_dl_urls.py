"""Where artifact bytes may come from, and how their URL is shown (``adapters/http/urls.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.http.urls import (
    ArtifactAccess,
    RedactURLs,
    check_artifact_url,
    check_redirect,
    is_loopback,
    redact_text,
    redact_url,
)
from harmony_fleet.adapters.systemd.unit_file import InstallSpec
from harmony_fleet.agent.build import make_files
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.cli.artifact_flags import artifact_access, artifact_argv
from harmony_fleet.contracts import device_id
from harmony_fleet.errors import DownloadRejected

OPT_IN = ArtifactAccess(allow_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://artifacts.example/a.pyz",
        "HTTPS://artifacts.example:8443/a?X-Amz-Signature=abc",
        "http://127.0.0.1:8080/a",
        "http://127.9.9.9/a",
        "http://[::1]:80/a",
        "http://localhost/a",
        "http://LOCALHOST./a",
    ],
)
def test_https_and_loopback_http_are_taken_without_opt_in(url: str) -> None:
    check_artifact_url(url)


@pytest.mark.parametrize(
    "url", ["http://artifacts.example/a", "http://10.0.0.1/a", "http://[fe80::1]/a"]
)
def test_plain_http_to_another_host_is_refused_naming_the_flag(url: str) -> None:
    with pytest.raises(DownloadRejected) as info:
        check_artifact_url(url)
    message = str(info.value)
    assert "--allow-http-artifacts" in message and "\n" not in message
    check_artifact_url(url, OPT_IN)  # the opt-in takes it


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/a", "file:///etc/passwd", "gopher://h/a", "h/a", "http:///a"]
)
def test_other_schemes_stay_refused_even_with_the_opt_in(url: str) -> None:
    with pytest.raises(DownloadRejected):
        check_artifact_url(url, OPT_IN)


def test_user_and_password_in_the_url_are_refused_without_showing_them() -> None:
    with pytest.raises(DownloadRejected, match="user:password") as info:
        check_artifact_url("https://bob:hunter2@artifacts.example/a", OPT_IN)
    assert "hunter2" not in str(info.value) and "bob" not in str(info.value)


def test_redact_url_drops_userinfo_query_and_fragment() -> None:
    url = "https://bob:hunter2@art.example:8443/v/a.pyz?X-Amz-Signature=SECRET&t=1#frag"
    assert redact_url(url) == "https://art.example:8443/v/a.pyz?…"
    assert redact_url("https://art.example/a.pyz") == "https://art.example/a.pyz"
    assert redact_url("http://[::1]:80/a?token=x") == "http://[::1]:80/a?…"
    assert redact_url(redact_url(url)) == redact_url(url)
    assert "SECRET" not in redact_url("not a url?token=SECRET")


def test_redact_text_redacts_every_url_inside() -> None:
    text = "Redirect 'https://a.example/x?sig=S1' -> 'http://u:p@b.example/y?sig=S2' failed"
    shown = redact_text(text)
    assert "S1" not in shown and "S2" not in shown and "u:p" not in shown
    assert "https://a.example/x?…" in shown and "http://b.example/y?…" in shown


@pytest.mark.parametrize("access", [ArtifactAccess(), OPT_IN])
def test_a_redirect_from_https_to_http_is_refused_whatever_the_flags(
    access: ArtifactAccess,
) -> None:
    with pytest.raises(DownloadRejected, match="downgrade") as info:
        check_redirect("https://a.example/x?sig=S", "http://127.0.0.1/y?sig=T", access)
    assert "sig=" not in str(info.value)


def test_every_hop_passes_the_same_rules() -> None:
    check_redirect("https://a.example/x", "https://b.example/y")
    check_redirect("http://127.0.0.1/x", "https://b.example/y")
    check_redirect("http://127.0.0.1/x", "http://localhost/y")
    with pytest.raises(DownloadRejected, match="--allow-http-artifacts"):
        check_redirect("http://127.0.0.1/x", "http://b.example/y")
    check_redirect("http://127.0.0.1/x", "http://b.example/y", OPT_IN)
    with pytest.raises(DownloadRejected):
        check_redirect("https://a.example/x", "ftp://b.example/y", OPT_IN)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("a.localhost", True),
        ("localhost.example", False),
        ("128.0.0.1", False),
        ("0.0.0.0", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_http_libraries_log_records_are_redacted() -> None:
    """httpx logs ``HTTP Request: GET <url> "HTTP/1.1 404"`` at INFO, token and all."""
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s %r", None, None
    )
    record.args = ("GET", "https://a.example/x?sig=S3CR3T", "HTTP/1.1 404 Not Found")
    assert RedactURLs().filter(record)
    assert "S3CR3T" not in record.getMessage()
    assert "https://a.example/x?…" in record.getMessage()


def test_the_artifact_flags_reach_the_installed_unit_and_its_candidates(tmp_path: Path) -> None:
    spec = InstallSpec(
        device_id=device_id("edge-1"),
        prefix=tmp_path / "opt",
        state_dir=tmp_path / "state",
        agent_args=("--allow-http-artifacts", "--artifact-ca", "/etc/fleet/artifact-ca.pem"),
    )
    argv = spec.main_argv()
    assert "--allow-http-artifacts" in argv
    assert argv[argv.index("--artifact-ca") + 1] == "/etc/fleet/artifact-ca.pem"


def test_the_agent_flags_are_handed_on_with_the_ca_path_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``fleet agent run`` appends to a candidate's command line, and what its files use."""
    (tmp_path / "ca.pem").write_text("")
    monkeypatch.chdir(tmp_path)
    argv = artifact_argv(True, Path("ca.pem"))
    assert argv == ("--allow-http-artifacts", "--artifact-ca", str(tmp_path / "ca.pem"))
    assert artifact_argv(False, None) == ()
    access = artifact_access(True, Path("ca.pem"))
    config = AgentConfig(
        device_id=device_id("edge-1"), state_dir=tmp_path / "state", artifacts=access
    )
    files = make_files(config, AgentLayout(tmp_path / "opt"))
    assert files.access == ArtifactAccess(allow_http=True, ca_file=str(tmp_path / "ca.pem"))
