"""``fleet upgrade DEVICE --version V --tuf-root root.json``: the marker's SHA-256 and length
come from the signed release metadata (no --url, no --sha256 to copy by hand); a version
nobody signed is one line and a non-zero exit, and without a root the artifact flags are
required (exit 2)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli.main import cli
from harmony_fleet.testing.releases import LocalReleases

DEV = "edge-01"


def test_the_marker_takes_hash_and_length_from_the_signed_release(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    releases = LocalReleases.init(tmp_path / "repo")
    artifact = tmp_path / "agent.pyz"
    artifact.write_bytes(b"agent 2.0.0, signed")

    async def publish() -> str:
        nc = await connect(nats_server.client_options())
        try:
            return (await releases.publish(nc, artifact, "2.0.0")).sha256
        finally:
            await nc.close()

    signed_sha = asyncio.run(publish())
    nats = ["--nats", nats_server.url, "--tuf-root", str(releases.trust_root)]
    runner = CliRunner()
    done = runner.invoke(cli, ["upgrade", DEV, "--version", "2.0.0", "--json", *nats])
    assert done.exit_code == exit_codes.OK, done.output
    shown = json.loads(done.output.strip().splitlines()[-1])
    assert (shown["sha256"], shown["size"]) == (signed_sha, len(b"agent 2.0.0, signed"))

    async def stored() -> tuple[str, int | None]:
        nc = await connect(nats_server.client_options())
        try:
            entry = await (await FleetKV(nc).markers()).get(DEV)
            assert entry is not None
            return entry.value.sha256, entry.value.size
        finally:
            await nc.close()

    assert asyncio.run(stored()) == (signed_sha, len(b"agent 2.0.0, signed"))

    unsigned = runner.invoke(cli, ["upgrade", DEV, "--version", "9.9.9", *nats])
    assert unsigned.exit_code == exit_codes.NOT_FOUND, unsigned.output
    lines = unsigned.output.strip().splitlines()
    assert len(lines) == 1 and "9.9.9 is not a signed release" in lines[0], lines


def test_without_a_root_the_artifact_flags_are_required() -> None:
    done = CliRunner().invoke(cli, ["upgrade", DEV, "--version", "2.0.0"])
    assert done.exit_code == exit_codes.USAGE
    assert "--url and --sha256, or --tuf-root" in done.output
