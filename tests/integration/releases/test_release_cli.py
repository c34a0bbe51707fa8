"""``fleet release`` against a real nats-server: what it publishes is accepted by a real
``tuf.ngclient.Updater`` reading the fleet's bucket and object store."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.release_support import NatsFetcher, updater
from tuf.api.exceptions import UnsignedMetadataError

from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.adapters.tuf.keys import read_key_file
from harmony_fleet.adapters.tuf.repository import target_path
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli.main import cli


@pytest.fixture
def fetcher(nats_server: EmbeddedNats) -> Iterator[NatsFetcher]:
    f = NatsFetcher(nats_server.client_options())
    try:
        yield f
    finally:
        f.close()


def fleet(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def init(repo: Path, *extra: str) -> bytes:
    done = fleet("release", "init", "--repo", str(repo), *extra)
    assert done.exit_code == 0, done.output
    return (repo / "metadata" / "1.root.json").read_bytes()


def artifact(tmp_path: Path, version: str, size: int = 1000) -> Path:
    path = tmp_path / f"agent-{version}.pyz"
    path.write_bytes(version.encode() * (size // len(version)))
    return path


def test_published_release_is_accepted_by_ngclient_over_nats(
    nats_server: EmbeddedNats, fetcher: NatsFetcher, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    root = init(repo, "--targets-keys", "3", "--targets-threshold", "2")
    for name in ("root.keys.json", "targets.keys.json", "online.keys.json"):
        assert stat.S_IMODE((repo / "keys" / name).stat().st_mode) == 0o600
    source = artifact(tmp_path, "2.0.0", size=300_000)  # several object store chunks
    done = fleet(
        "release", "publish", str(source), "--version", "2.0.0", "--min-version", "1.0.0",
        "--channel", "beta", "--repo", str(repo), "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["outcome"] == "created"
    assert "PRIVATE KEY" not in done.output

    client = updater(fetcher, tmp_path / "device", root)
    client.refresh()
    info = client.get_targetinfo(target_path("2.0.0"))
    assert info is not None
    assert info.custom == {"version": "2.0.0", "min_version": "1.0.0", "channel": "beta"}
    assert Path(client.download_target(info)).read_bytes() == source.read_bytes()

    listed = fleet("release", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["version"], row["min_version"], row["channel"]) == ("2.0.0", "1.0.0", "beta")
    assert row["length"] == source.stat().st_size


def test_publishing_again_is_unchanged_and_other_bytes_are_refused(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    init(repo)
    source = artifact(tmp_path, "2.0.0")
    args = ["release", "publish", "--version", "2.0.0", "--repo", str(repo)]
    assert fleet(*args, str(source)).exit_code == 0
    again = fleet(*args, str(source))
    assert again.exit_code == 0 and "unchanged" in again.output
    other = tmp_path / "other.pyz"
    other.write_bytes(b"other bytes")
    refused = CliRunner().invoke(cli, [*args, str(other)])
    assert refused.exit_code == exit_codes.REFUSED
    assert refused.output.count("\n") == 1 and "already signed" in refused.output


def test_a_skip_list_is_published_updated_listed_and_checked(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    init(repo)
    source = artifact(tmp_path, "2.0.0")
    args = ["release", "publish", str(source), "--version", "2.0.0", "--repo", str(repo)]
    assert fleet(*args, "--skip", "edge-07").exit_code == 0
    updated = fleet(*args, "--skip", "edge-07", "--skip", "hardware_model=rpi3", "--json")
    assert updated.exit_code == 0, updated.output
    body = json.loads(updated.output)
    assert body["outcome"] == "updated"
    assert body["target"]["skip"] == ["edge-07", "hardware_model=rpi3"]
    listed = fleet("release", "list", "--json")
    assert [row["skip"] for row in json.loads(listed.output)] == [
        ["edge-07", "hardware_model=rpi3"]
    ]
    table = fleet("release", "list")
    assert "SKIP" in table.output and "edge-07" in table.output
    bad = CliRunner().invoke(cli, [*args, "--skip", "Not A Device"])
    assert bad.exit_code == exit_codes.USAGE
    assert "--skip" in bad.output


def test_publish_without_a_repository_is_one_line_and_not_found(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    source = artifact(tmp_path, "2.0.0")
    done = CliRunner().invoke(
        cli, ["release", "publish", str(source), "--version", "2.0.0", "--repo", str(tmp_path)]
    )
    assert done.exit_code == exit_codes.NOT_FOUND
    assert done.output.count("\n") == 1 and "fleet release init" in done.output


def test_refresh_with_only_the_online_keys_is_followed_by_clients(
    nats_server: EmbeddedNats, fetcher: NatsFetcher, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    root = init(repo)
    assert fleet("release", "publish", str(artifact(tmp_path, "2.0.0")), "--version", "2.0.0",
                 "--repo", str(repo)).exit_code == 0  # fmt: skip
    online = repo / "keys" / "online.keys.json"
    done = fleet("release", "refresh", "--force", "--repo", str(tmp_path / "none"),
                 "--keys", str(online))  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "snapshot, timestamp" in done.output
    client = updater(fetcher, tmp_path / "device", root)
    client.refresh()
    assert client.get_targetinfo(target_path("2.0.0")) is not None
    # the release manager's next publish starts from the operator's newer timestamp
    assert fleet("release", "publish", str(artifact(tmp_path, "3.0.0")), "--version", "3.0.0",
                 "--repo", str(repo)).exit_code == 0  # fmt: skip
    later = updater(fetcher, tmp_path / "device2", root)
    later.refresh()
    assert later.get_targetinfo(target_path("3.0.0")) is not None


def test_a_rotated_timestamp_key_voids_metadata_signed_with_the_old_one(
    nats_server: EmbeddedNats, fetcher: NatsFetcher, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    root = init(repo)
    assert fleet("release", "publish", str(artifact(tmp_path, "2.0.0")), "--version", "2.0.0",
                 "--repo", str(repo)).exit_code == 0  # fmt: skip
    stolen = tmp_path / "stolen.keys.json"
    stolen.write_bytes((repo / "keys" / "online.keys.json").read_bytes())
    old_keyids = set(read_key_file(stolen).signers["timestamp"])
    rotated = fleet("release", "rotate-key", "timestamp", "--repo", str(repo))
    assert rotated.exit_code == 0, rotated.output
    assert not old_keyids & set(
        read_key_file(repo / "keys" / "online.keys.json").signers["timestamp"]
    )
    device = tmp_path / "device"
    updater(fetcher, device, root).refresh()  # the new root and timestamp: accepted

    # the thief re-signs the published timestamp with the old key
    forged = fleet("release", "refresh", "--force", "--repo", str(tmp_path / "none"),
                   "--keys", str(stolen))  # fmt: skip
    assert forged.exit_code != 0  # our own tooling will not sign with a revoked key
    assert "needs 1" in forged.output
    with pytest.raises(UnsignedMetadataError):
        _forge_timestamp(nats_server, stolen, fetcher, tmp_path, root)


def _forge_timestamp(
    nats_server: EmbeddedNats, stolen: Path, fetcher: NatsFetcher, tmp_path: Path, root: bytes
) -> None:
    """Sign a newer timestamp with the stolen (rotated-out) key, publish it as the admin, and
    let a client refresh."""
    import asyncio

    from tuf.api.metadata import Metadata

    from harmony_fleet.adapters.nats.connection import connect

    key = next(iter(read_key_file(stolen).signers["timestamp"].values()))

    async def publish() -> None:
        nc = await connect(nats_server.client_options())
        try:
            kv = await nc.jetstream().key_value("fleet_tuf")
            md = Metadata.from_bytes((await kv.get("timestamp.json")).value)
            md.signed.version += 1
            md.sign(key)
            await kv.put("timestamp.json", md.to_bytes())
        finally:
            await nc.close()

    asyncio.run(publish())
    updater(fetcher, tmp_path / "fresh", root).refresh()


def test_publish_without_the_targets_keys_is_one_line_naming_the_flag(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    init(repo)
    held = tmp_path / "held-elsewhere.keys.json"
    (repo / "keys" / "targets.keys.json").rename(held)
    args = ["release", "publish", str(artifact(tmp_path, "2.0.0")), "--version", "2.0.0"]
    missing = CliRunner().invoke(cli, [*args, "--repo", str(repo)])
    assert missing.exit_code == exit_codes.USAGE
    assert missing.output.count("\n") == 1 and "--keys" in missing.output
    given = fleet(*args, "--repo", str(repo), "--keys", str(held))
    assert given.exit_code == 0, given.output


def test_a_root_rotation_by_the_cli_is_followed_by_a_client_pinned_to_the_old_root(
    nats_server: EmbeddedNats, fetcher: NatsFetcher, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    root = init(repo, "--root-keys", "2", "--root-threshold", "2")
    old = set(read_key_file(repo / "keys" / "root.keys.json").signers["root"])
    rotated = fleet("release", "rotate-key", "root", "--repo", str(repo))
    assert rotated.exit_code == 0, rotated.output
    assert not old & set(read_key_file(repo / "keys" / "root.keys.json").signers["root"])
    assert fleet("release", "publish", str(artifact(tmp_path, "2.0.0")), "--version", "2.0.0",
                 "--repo", str(repo)).exit_code == 0  # fmt: skip
    client = updater(fetcher, tmp_path / "device", root)
    client.refresh()
    assert client.get_targetinfo(target_path("2.0.0")) is not None
    trusted = json.loads((tmp_path / "device" / "metadata" / "root.json").read_text())
    assert trusted["signed"]["version"] == 2  # the client now trusts the new root
