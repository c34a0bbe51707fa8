"""Which NATS URLs the CLI takes: no secrets in them, no plain text to another host."""

from __future__ import annotations

import pytest

from harmony_fleet.adapters.nats.flags import build_nats_options, check_nats_url, nats_argv
from harmony_fleet.errors import ConfigError


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:4222",
        "nats://localhost:4222",
        "nats://[::1]:4222",
        "tls://edge.example:4222",
    ],
)
def test_loopback_or_tls_urls_are_taken(url: str) -> None:
    check_nats_url(url)


def test_plain_nats_to_another_host_is_refused_unless_insecure() -> None:
    with pytest.raises(ConfigError, match=r"--nats: .*use tls://10\.0\.0\.5:4222"):
        check_nats_url("nats://10.0.0.5:4222")
    check_nats_url("nats://10.0.0.5:4222", insecure=True)


@pytest.mark.parametrize("url", ["tls://edge:hunter2@nats.example:4222", "nats://edge@127.0.0.1"])
def test_credentials_in_the_url_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--nats-creds") as caught:
        check_nats_url(url, insecure=True)
    assert "hunter2" not in str(caught.value)


def test_a_client_certificate_needs_its_key_and_travels_to_children(tmp_path: object) -> None:
    kwargs = dict(
        nats_urls=("tls://nats.example:4222",),
        nats_user=None,
        nats_password=None,
        nats_creds=None,
        nats_tls_ca=None,
    )
    with pytest.raises(ConfigError, match="--nats-tls-key"):
        build_nats_options(**kwargs, nats_tls_cert="client.pem")  # type: ignore[arg-type]
    argv = nats_argv(
        **kwargs,  # type: ignore[arg-type]
        nats_tls_cert="/c.pem",
        nats_tls_key="/k.pem",
        nats_insecure=True,
    )
    assert argv[-5:] == ("--nats-tls-cert", "/c.pem", "--nats-tls-key", "/k.pem", "--insecure")
