"""The release repository (adapters/tuf): real python-tuf, real key files, real ngclient.

Each test builds a repository in a temporary folder and has a real ``tuf.ngclient.Updater``
read it (through a fetcher over the folders), so "accepted" and "refused" are the client's
verdicts, not ours.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tuf.api.exceptions import DownloadHTTPError, ExpiredMetadataError, UnsignedMetadataError
from tuf.ngclient import FetcherInterface, Updater

from harmony_fleet.adapters.tuf.keys import (
    FILE_OF_ROLE,
    KeyRing,
    key_folder_files,
    read_key_file,
    write_key_folder,
)
from harmony_fleet.adapters.tuf.repository import Repository, RoleSpec, target_path
from harmony_fleet.adapters.tuf.store import DirStore, publish_order
from harmony_fleet.errors import ConfigError, InvalidMessage, Refused


class FolderFetcher(FetcherInterface):
    """Serves ``<base>/metadata/<name>`` from one folder and ``<base>/targets/<name>`` from
    another: what a mirror serves."""

    def __init__(self, metadata: Path, targets: Path) -> None:
        self.metadata = metadata
        self.targets = targets

    def _fetch(self, url: str) -> Iterator[bytes]:
        kind, _, name = url.removeprefix("http://repo/").partition("/")
        folder = self.metadata if kind == "metadata" else self.targets
        try:
            data = (folder / name).read_bytes()
        except FileNotFoundError:
            raise DownloadHTTPError(f"{url} not found", 404) from None
        return iter([data])


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    return tmp_path / "repo"


def make(repo_dir: Path, **specs: RoleSpec) -> Repository:
    repo = Repository.create(DirStore(repo_dir / "metadata"), specs)
    write_key_folder(repo_dir / "keys", repo.keys)
    return repo


def reopen(repo_dir: Path, *key_files: Path) -> Repository:
    files = key_files or tuple(key_folder_files(repo_dir / "keys"))
    return Repository(DirStore(repo_dir / "metadata"), KeyRing.load(files))


def artifact(tmp_path: Path, version: str, body: bytes | None = None) -> Path:
    path = tmp_path / f"agent-{version}.pyz"
    path.write_bytes(body or f"artifact of {version}".encode())
    return path


def serve_target(repo_dir: Path, source: Path, repo: Repository, version: str) -> None:
    """Put the artifact where a mirror would (consistent snapshot name)."""
    release = next(r for r in repo.releases() if r.version == version)
    (repo_dir / "targets").mkdir(exist_ok=True)
    (repo_dir / "targets" / release.object_name).write_bytes(source.read_bytes())


def client(repo_dir: Path, tmp_path: Path, root: bytes, name: str = "device") -> Updater:
    state = tmp_path / name
    (state / "metadata").mkdir(parents=True, exist_ok=True)
    (state / "download").mkdir(exist_ok=True)
    return Updater(
        metadata_dir=str(state / "metadata"),
        metadata_base_url="http://repo/metadata/",
        target_dir=str(state / "download"),
        target_base_url="http://repo/targets/",
        fetcher=FolderFetcher(repo_dir / "metadata", repo_dir / "targets"),
        bootstrap=root,
    )


def initial_root(repo_dir: Path) -> bytes:
    return (repo_dir / "metadata" / "1.root.json").read_bytes()


def test_a_new_repository_has_every_role_and_keys_0600(repo_dir: Path) -> None:
    make(repo_dir, targets=RoleSpec(keys=3, threshold=2))
    names = sorted(p.name for p in (repo_dir / "metadata").iterdir())
    assert names == ["1.root.json", "1.snapshot.json", "1.targets.json", "timestamp.json"]
    for name in set(FILE_OF_ROLE.values()):
        mode = stat.S_IMODE((repo_dir / "keys" / name).stat().st_mode)
        assert mode == 0o600, name
    root = reopen(repo_dir).root().signed
    assert root.consistent_snapshot is True
    assert (len(root.roles["targets"].keyids), root.roles["targets"].threshold) == (3, 2)
    assert len(read_key_file(repo_dir / "keys" / "online.keys.json").signers) == 2
    assert "PRIVATE" not in repr(reopen(repo_dir).keys)


def test_a_published_target_is_found_and_downloaded_by_ngclient(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir)
    source = artifact(tmp_path, "2.0.0")
    release, outcome = repo.add_target(source, version="2.0.0", min_version="1.0.0")
    assert outcome == "created"
    serve_target(repo_dir, source, repo, "2.0.0")
    updater = client(repo_dir, tmp_path, initial_root(repo_dir))
    updater.refresh()
    info = updater.get_targetinfo(target_path("2.0.0"))
    assert info is not None
    assert info.custom == {"version": "2.0.0", "min_version": "1.0.0", "channel": "stable"}
    assert info.length == source.stat().st_size
    assert info.hashes["sha256"] == release.sha256
    assert Path(updater.download_target(info)).read_bytes() == source.read_bytes()


def test_publishing_the_same_bytes_again_changes_nothing_and_other_bytes_are_refused(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir)
    repo.add_target(artifact(tmp_path, "2.0.0"), version="2.0.0")
    written = len(repo.store.written)
    assert repo.add_target(artifact(tmp_path, "2.0.0"), version="2.0.0")[1] == "unchanged"
    assert len(repo.store.written) == written
    other = artifact(tmp_path, "other", b"other bytes")
    with pytest.raises(Refused, match="already signed"):
        repo.add_target(other, version="2.0.0")
    assert repo.add_target(other, version="2.0.0", replace=True)[1] == "replaced"


def test_a_skip_list_is_signed_with_the_target_and_can_change_without_new_bytes(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir)
    source = artifact(tmp_path, "2.0.0")
    release, outcome = repo.add_target(source, version="2.0.0", skip=("edge-07",))
    assert (outcome, release.skip) == ("created", ("edge-07",))
    # the same bytes with another list: a metadata change, no --replace needed
    release, outcome = repo.add_target(
        source, version="2.0.0", skip=("edge-07", "hardware_model=rpi3")
    )
    assert (outcome, release.skip) == ("updated", ("edge-07", "hardware_model=rpi3"))
    assert repo.add_target(source, version="2.0.0", skip=release.skip)[1] == "unchanged"
    updater = client(repo_dir, tmp_path, initial_root(repo_dir))
    updater.refresh()
    info = updater.get_targetinfo(target_path("2.0.0"))
    assert info is not None
    assert info.custom["skip"] == ["edge-07", "hardware_model=rpi3"]  # what a client verified
    assert [r.skip for r in reopen(repo_dir).releases()] == [("edge-07", "hardware_model=rpi3")]
    with pytest.raises(InvalidMessage, match="skip"):
        repo.add_target(source, version="2.0.0", skip=("Not A Device",))


def test_two_of_three_targets_keys_sign_and_one_is_not_enough(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir, targets=RoleSpec(keys=3, threshold=2))
    keyids = sorted(repo.keys.signers["targets"])
    online = repo_dir / "keys" / "online.keys.json"
    two = KeyRing()
    for keyid in keyids[:2]:
        two.add("targets", repo.keys.signers["targets"][keyid])
    two.merge(read_key_file(online))
    Repository(DirStore(repo_dir / "metadata"), two).add_target(
        artifact(tmp_path, "2.0.0"), version="2.0.0"
    )
    updater = client(repo_dir, tmp_path, initial_root(repo_dir))
    updater.refresh()
    assert updater.get_targetinfo(target_path("2.0.0")) is not None

    one = KeyRing()
    one.add("targets", repo.keys.signers["targets"][keyids[0]])
    one.merge(read_key_file(online))
    with pytest.raises(ConfigError, match="needs 2 of its 3"):
        Repository(DirStore(repo_dir / "metadata"), one).add_target(
            artifact(tmp_path, "3.0.0"), version="3.0.0"
        )


def test_refresh_renews_what_is_due_with_the_online_keys_only(
    repo_dir: Path, tmp_path: Path
) -> None:
    make(repo_dir)
    online = reopen(repo_dir, repo_dir / "keys" / "online.keys.json")
    assert online.refresh() == []  # nothing is due right after init
    later = datetime.now(UTC) + timedelta(days=5)
    online.now = lambda: later
    assert online.refresh() == ["snapshot", "timestamp"]
    assert online.timestamp().signed.version == 2
    assert online.timestamp().signed.expires > later
    # a client whose clock is 5 days on accepts the refreshed repository
    assert online.refresh(force=True) == ["snapshot", "timestamp"]
    online.verify()


def test_a_client_refuses_a_repository_left_unrefreshed(repo_dir: Path, tmp_path: Path) -> None:
    repo = make(repo_dir)
    expired = datetime.now(UTC) - timedelta(days=2)
    repo.now = lambda: expired  # re-signed two days ago: the timestamp expired yesterday
    repo.refresh(force=True)
    with pytest.raises(ExpiredMetadataError):
        client(repo_dir, tmp_path, initial_root(repo_dir)).refresh()


def test_root_rotation_is_followed_by_a_client_that_trusts_the_old_root(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir, root=RoleSpec(keys=2, threshold=2))
    old_root_keys = set(repo.keys.signers["root"])
    root = repo.rotate("root")
    assert root.version == 2
    assert not old_root_keys & set(root.roles["root"].keyids)
    signed_by = set(reopen(repo_dir).root().signatures)
    assert signed_by == old_root_keys | set(root.roles["root"].keyids)  # old AND new keys
    write_key_folder(repo_dir / "keys", repo.keys, ["root"])
    repo.add_target(artifact(tmp_path, "2.0.0"), version="2.0.0")
    updater = client(repo_dir, tmp_path, initial_root(repo_dir))
    updater.refresh()
    assert updater.get_targetinfo(target_path("2.0.0")) is not None
    assert reopen(repo_dir).root().signed.version == 2


def test_a_rotated_online_key_makes_metadata_signed_with_the_old_key_refused(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir)
    old_timestamp_keys = KeyRing()
    for keyid, signer in repo.keys.signers["timestamp"].items():
        old_timestamp_keys.signers.setdefault("timestamp", {})[keyid] = signer
    repo.rotate("timestamp")
    write_key_folder(repo_dir / "keys", repo.keys, ["timestamp"])
    client(repo_dir, tmp_path, initial_root(repo_dir), "before").refresh()  # new key: accepted

    # whoever stole the old key signs a timestamp with it: a client refuses it
    stolen = Repository(DirStore(repo_dir / "metadata"), old_timestamp_keys)
    timestamp = stolen.timestamp()
    timestamp.signed.version += 1
    timestamp.sign(next(iter(old_timestamp_keys.signers["timestamp"].values())))
    (repo_dir / "metadata" / "timestamp.json").write_bytes(timestamp.to_bytes())
    with pytest.raises(UnsignedMetadataError):
        client(repo_dir, tmp_path, initial_root(repo_dir), "after").refresh()


def test_rotating_targets_re_signs_the_targets_and_keeps_them(
    repo_dir: Path, tmp_path: Path
) -> None:
    repo = make(repo_dir)
    repo.add_target(artifact(tmp_path, "2.0.0"), version="2.0.0")
    repo.rotate("targets", keys=3, threshold=2)
    write_key_folder(repo_dir / "keys", repo.keys, ["targets"])
    reloaded = reopen(repo_dir)
    assert len(reloaded.keys.signers["targets"]) == 3
    reloaded.verify()
    updater = client(repo_dir, tmp_path, initial_root(repo_dir))
    updater.refresh()
    assert updater.get_targetinfo(target_path("2.0.0")) is not None


def test_rotation_needs_the_root_keys(repo_dir: Path) -> None:
    make(repo_dir)
    online_only = reopen(repo_dir, repo_dir / "keys" / "online.keys.json")
    with pytest.raises(ConfigError, match="current root keys"):
        online_only.rotate("timestamp")


def test_publish_order_puts_roots_first_and_timestamp_last() -> None:
    names = ["timestamp.json", "3.snapshot.json", "2.root.json", "4.targets.json", "1.root.json"]
    assert publish_order(names) == [
        "1.root.json",
        "2.root.json",
        "4.targets.json",
        "3.snapshot.json",
        "timestamp.json",
    ]
