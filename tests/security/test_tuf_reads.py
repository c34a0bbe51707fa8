"""A device reads the signed release repository by direct gets only, and writes none of it.

Against the real server (TLS + JWT): a client holding device edge-a's credentials runs the
device's TUF client (``adapters.tuf.client.TrustedReleases``) over the ``fleet_tuf`` bucket and
the ``fleet_artifacts`` object store, which the admin published, and gets the verified bytes;
its writes to both are refused by the server. The attacks through a real agent process are in
``test_tuf_attacks.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.tuf.client import TrustedReleases
from harmony_fleet.adapters.tuf.fetcher import ARTIFACTS_BUCKET as TUF_ARTIFACTS
from harmony_fleet.adapters.tuf.fetcher import METADATA_BUCKET as TUF_METADATA
from harmony_fleet.adapters.tuf.pin import pin_root
from harmony_fleet.errors import Untrusted
from harmony_fleet.testing.signed_repo import Repo, open_stores, publish
from tests.security.support import Attacker

BODY = b"agent 2.0.0 " * 50_000  # several object store chunks


@pytest.fixture
async def repo(nc: NatsClient) -> tuple[Repo, object, object]:
    repo = Repo()
    repo.add("2.0.0", BODY)
    kv, obj = await open_stores(nc.jetstream())
    await publish(kv, obj, {"1.root.json": repo.root_json(), **repo.release()}, repo.artifacts)
    return repo, kv, obj


def _client(device: Attacker, repo: Repo, state: Path) -> TrustedReleases:
    state.mkdir(parents=True, exist_ok=True)
    (state / "given-root.json").write_bytes(repo.root_json())
    pin_root(state, state / "given-root.json")
    client = TrustedReleases(state)
    client.nc = device.nc
    return client


async def test_a_device_reads_and_verifies_a_signed_target_by_direct_gets(
    device_a: Attacker, repo: tuple[Repo, object, object], tmp_path: Path
) -> None:
    client = _client(device_a, repo[0], tmp_path / "state")
    release = await client.verify("2.0.0")
    assert release.length == len(BODY)
    assert release.sha256 == hashlib.sha256(BODY).hexdigest()
    dest = tmp_path / "agent"
    await client.fetch(release, dest)
    assert dest.read_bytes() == BODY
    assert not device_a.errors, device_a.errors
    with pytest.raises(Untrusted, match=r"^unsigned target"):
        await client.verify("9.9.9")


async def test_a_signed_target_missing_from_the_artifact_store_is_artifact_missing(
    device_a: Attacker, repo: tuple[Repo, object, object], tmp_path: Path
) -> None:
    """Its metadata verifies; its bytes are gone: the reason says so (not a metadata fault)."""
    signed, _kv, obj = repo
    client = _client(device_a, signed, tmp_path / "state")
    release = await client.verify("2.0.0")
    await obj.delete(f"{release.sha256}.{release.path}")  # type: ignore[attr-defined]
    dest = tmp_path / "agent"
    with pytest.raises(Untrusted) as refused:
        await client.fetch(release, dest)
    assert refused.value.reason == "artifact missing", refused.value
    assert "not in the artifact store" in str(refused.value)
    assert not dest.exists()


async def test_a_device_cannot_write_the_repository(
    device_a: Attacker, repo: tuple[Repo, object, object]
) -> None:
    await device_a.nc.publish(f"$KV.{TUF_METADATA}.timestamp.json", b"{}")
    await device_a.refused(f"$KV.{TUF_METADATA}.timestamp.json")
    chunk = f"$O.{TUF_ARTIFACTS}.C.forged"
    await device_a.nc.publish(chunk, b"evil")
    await device_a.refused(chunk)
    for api in (f"STREAM.PURGE.KV_{TUF_METADATA}", f"STREAM.DELETE.OBJ_{TUF_ARTIFACTS}"):
        with pytest.raises(Exception):  # noqa: B017 - refused: no responder gets to see it
            await device_a.nc.request(f"$JS.API.{api}", b"", timeout=1)
        await device_a.refused(f"$JS.API.{api}")
