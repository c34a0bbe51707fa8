"""``fleet upgrade``, ``fleet upgrade-status`` against a real nats-server, no agent: what the
commands say and how they exit when the marker is replaced, unreadable, or the flags are wrong."""

from __future__ import annotations

import asyncio
import json
import time

from click.testing import CliRunner

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, write_marker
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli.main import cli
from harmony_fleet.cli.request import follow_to_end
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
    new_upgrade_id,
)
from harmony_fleet.core.upgrade.requests import Until

DEV = "edge-01"
SHA = "0" * 64


def marker(version: str = "2.0.0") -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=DEV,
        target_version=version,
        artifact_url="http://artifacts.test/a",
        sha256=SHA,
        requested_at=time.time(),
    )


def upgrade_args(url: str, *extra: str) -> list[str]:
    return ["upgrade", DEV, "--version", "2.0.0", "--url", url, "--sha256", SHA, *extra]


def test_a_bad_url_is_one_line_naming_the_flag_and_exit_2() -> None:
    result = CliRunner().invoke(cli, upgrade_args("file:///tmp/agent"))
    assert result.exit_code == exit_codes.USAGE
    lines = result.output.strip().splitlines()
    assert lines == [
        "fleet: error: --url: not an http(s) URL: file:///tmp/agent (artifacts come over https)"
    ]


def test_plain_http_to_another_host_is_refused_early_naming_the_opt_in() -> None:
    """Exit 2 and one line before any connection (no --nats is reachable here); the token in
    the query is not echoed; --allow-http-artifacts takes it (and then NATS is what fails)."""
    url = "http://artifacts.example/agent.pyz?token=S3CR3T"
    result = CliRunner().invoke(cli, upgrade_args(url))
    assert result.exit_code == exit_codes.USAGE
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleet: error: --url: plain http")
    assert "--allow-http-artifacts" in lines[0] and "S3CR3T" not in lines[0]
    for bad in ("https://u:pw@artifacts.example/a", "ftp://artifacts.example/a"):
        refused = CliRunner().invoke(cli, upgrade_args(bad, "--allow-http-artifacts"))
        assert refused.exit_code == exit_codes.USAGE, refused.output
        assert "pw" not in refused.output
    unreachable = ["--nats", "nats://127.0.0.1:1", "--wait", "0"]
    opted = CliRunner().invoke(cli, upgrade_args(url, "--allow-http-artifacts", *unreachable))
    assert "--url" not in opted.output, opted.output


def test_agent_install_refuses_plain_http_before_anything_else() -> None:
    """Before the root and systemd checks: exit 2, one line naming the flag."""
    args = ["agent", "install", "--device-id", DEV, "--sha256", SHA, "--artifact-url"]
    result = CliRunner().invoke(cli, [*args, "http://artifacts.example/agent.pyz?t=S3CR3T"])
    assert result.exit_code == exit_codes.USAGE, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--artifact-url" in lines[0], lines
    assert "--allow-http-artifacts" in lines[0] and "S3CR3T" not in lines[0]
    opted = CliRunner().invoke(
        cli, [*args, "http://artifacts.example/a.pyz", "--allow-http-artifacts"]
    )
    assert "--artifact-url" not in opted.output, opted.output  # past the URL check


def test_a_bad_nats_url_is_one_line_too() -> None:
    result = CliRunner().invoke(cli, ["upgrade-status", "--nats", "localhost:4222"])
    assert result.exit_code == exit_codes.USAGE
    assert len(result.output.strip().splitlines()) == 1
    assert "--nats" in result.output


async def test_waiting_for_a_superseded_upgrade_returns_at_once_naming_the_newer_one(
    nc: NatsClient,
) -> None:
    first, second = marker(), marker("3.0.0")
    await write_marker(nc, first)
    await write_marker(nc, second)  # before any agent took the first one up
    started = time.monotonic()
    code = await follow_to_end(FleetKV(nc), first, wait_s=30, as_json=False)
    assert code == exit_codes.SUPERSEDED
    assert time.monotonic() - started < 5


async def test_waiting_until_committed_returns_at_the_commit(nc: NatsClient) -> None:
    m = marker()
    await write_marker(nc, m)
    committed = UpgradeStatus(
        upgrade_id=m.upgrade_id,
        device_id=DEV,
        phase=AgentUpgradePhase.COMMITTED,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="a" * 32,
        started_at=1.0,
        updated_at=2.0,
        watch_until=time.time() + 600,
    )
    await (await FleetKV(nc).statuses()).put(DEV, committed)
    code = await follow_to_end(FleetKV(nc), m, wait_s=10, as_json=False, until=Until.COMMITTED)
    assert code == exit_codes.OK
    # The default waits for the end of the watch: still committed, so it times out.
    assert await follow_to_end(FleetKV(nc), m, wait_s=0.5, as_json=False) == exit_codes.TEMPFAIL


def test_an_undecodable_marker_is_shown_and_the_next_upgrade_replaces_it(
    nats_server: EmbeddedNats,
) -> None:
    async def put_garbage() -> None:
        nc = await connect(nats_server.client_options())
        try:
            await (await FleetKV(nc).markers()).kv.put(DEV, b'{"upgrade_id": 7}')
            await (await FleetKV(nc).statuses()).kv.put("edge-02", b"{not json")
        finally:
            await nc.close()

    async def current() -> UpgradeMarker | None:
        nc = await connect(nats_server.client_options())
        try:
            entry = await (await FleetKV(nc).markers()).get(DEV)
            return entry.value if entry is not None else None
        finally:
            await nc.close()

    asyncio.run(put_garbage())
    runner = CliRunner()
    shown = runner.invoke(cli, ["upgrade-status", DEV, "--nats", nats_server.url])
    assert "the upgrade marker does not decode" in shown.output
    assert "next `fleet upgrade` replaces it" in shown.output
    every = runner.invoke(cli, ["upgrade-status", "--nats", nats_server.url])
    assert every.exit_code == exit_codes.OK, every.output
    assert "Undecodable" in every.output  # a row for edge-02, not hidden
    assert "fleet: edge-02: the status does not decode" in every.output
    assert "fleet: edge-01: the upgrade marker does not decode" in every.output

    nats = ["--nats", nats_server.url]
    done = runner.invoke(cli, [*upgrade_args("https://a.test/x"), *nats])
    assert done.exit_code == exit_codes.OK, done.output
    assert "replaces an undecodable value" in done.output
    written = asyncio.run(current())
    assert written is not None and written.target_version == "2.0.0"
    again = runner.invoke(cli, [*upgrade_args("https://a.test/x"), "--json", *nats])
    assert again.exit_code == exit_codes.OK, again.output
    assert json.loads(again.output.splitlines()[-1])["device_id"] == DEV
