"""A cluster node's settings: routes parsed strictly, the route block with TLS both ways and the
password, and ``fleet server``'s cluster flags checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harmony_fleet.adapters.nats.auth import AuthStore
from harmony_fleet.adapters.nats.cluster import ClusterSpec, cluster_config, parse_route
from harmony_fleet.cli.main import cli
from harmony_fleet.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.1:6222", ("10.0.0.1", 6222)),
        ("nats-route://nats-1.example:6222", ("nats-1.example", 6222)),
        ("tls://user:pw@nats-2:7000/", ("nats-2", 7000)),
        ("[::1]:6222", ("::1", 6222)),
    ],
)
def test_a_route_is_host_and_port(value: str, expected: tuple[str, int]) -> None:
    assert parse_route(value) == expected


@pytest.mark.parametrize("value", ["nats-1", "nats-1:", ":6222", "nats-1:70000", "nats-1:x"])
def test_a_route_without_a_valid_port_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_route(value)


def test_the_route_certificate_names_the_listen_address_and_every_route_host() -> None:
    spec = ClusterSpec(
        name="fleet", server_name="a", host="0.0.0.0", routes=("a.x:6222", "b.x:6222", "a.x:6222")
    )
    assert spec.route_hosts() == ("0.0.0.0", "a.x", "b.x")


def test_the_cluster_block_requires_tls_both_ways_and_the_route_password(tmp_path: Path) -> None:
    auth = AuthStore(tmp_path / "auth")
    auth.ensure()
    spec = ClusterSpec(
        name="fleet", server_name="n1", port=6222, routes=("127.0.0.1:6222", "127.0.0.1:6223")
    )
    text = cluster_config(spec, auth, port=6222)
    password = (auth.root / "route.secret").read_text().strip()
    assert len(password) >= 24
    assert f'"nats-route://route:{password}@127.0.0.1:6223"' in text
    assert "verify: true" in text and "route.pem" in text and str(auth.ca_file) in text
    assert 'server_name: "n1"' in text
    assert (auth.root / "route.secret").stat().st_mode & 0o077 == 0
    assert cluster_config(spec, auth, port=6222) == text  # the password is made once


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster-name", "fleet", "--routes", "a:6222"], "--server-name"),
        (["--cluster-name", "fleet", "--server-name", "n1"], "--routes"),
        (["--server-name", "n1"], "--cluster-name"),
        (["--cluster-name", "f", "--server-name", "n1", "--routes", "a:b"], "HOST:PORT"),
        (["--dev-cluster", "3", "--insecure"], "TLS"),
    ],
)
def test_cluster_flags_are_checked_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["server", "--store-dir", str(tmp_path / "s"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "s").exists()
