"""``fleet operator --http`` and ``fleet credentials http-token``: the flags, without a fleet."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harmony_fleet.cli.main import cli
from harmony_fleet.cli.operator import operator_cmd, parse_listen
from harmony_fleet.operator.http.tokens import parse_tokens


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9090", ("127.0.0.1", 9090)),
        (":9090", ("127.0.0.1", 9090)),
        ("0.0.0.0:9090", ("0.0.0.0", 9090)),
        ("[::1]:0", ("::1", 0)),
    ],
)
def test_listen_addresses_default_to_loopback(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["", "host:", "host:port", "1:70000"])
def test_a_bad_listen_address_is_a_usage_error(value: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_listen(value)


def test_http_without_a_token_file_is_refused_before_anything_starts() -> None:
    done = CliRunner().invoke(operator_cmd, ["--http", "127.0.0.1:0"])
    assert done.exit_code == 2
    assert "--http needs --http-token-file" in done.output


def test_a_token_file_without_a_token_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nothing yet\n")
    done = CliRunner().invoke(
        operator_cmd, ["--http", "127.0.0.1:0", "--http-token-file", str(empty)]
    )
    assert done.exit_code == 2
    assert "no token in it" in done.output


def test_http_token_writes_owner_only_tokens_and_adds_one_on_request(tmp_path: Path) -> None:
    out = tmp_path / "tokens"
    runner = CliRunner()
    assert runner.invoke(cli, ["credentials", "http-token", "--out", str(out)]).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    [first] = parse_tokens(out.read_text(), source="tokens")
    again = runner.invoke(cli, ["credentials", "http-token", "--out", str(out)])
    assert again.exit_code == 2 and "--add" in again.output  # never overwritten
    assert (
        runner.invoke(cli, ["credentials", "http-token", "--out", str(out), "--add"]).exit_code == 0
    )
    tokens = parse_tokens(out.read_text(), source="tokens")
    assert len(tokens) == 2 and first in tokens
    assert out.read_text().splitlines()[0] == first  # tokens only: a one-token file is a secret
    assert (
        first
        not in runner.invoke(
            cli, ["credentials", "http-token", "--out", str(tmp_path / "b")]
        ).output
    )
