"""The attacks The Update Framework names, against a real agent process on signed releases.

Metadata lives in the real server's (TLS + JWT) ``fleet_tuf`` bucket, artifacts in its
``fleet_artifacts`` object store; the device (LocalFleet: a supervised agent artifact holding
its own device credentials) pins the repository's first root.json (``--trust-root``). The
attacks need metadata the release tooling never signs (expired, wrongly signed, older, mixed):
they are signed with python-tuf's Metadata API (``testing.signed_repo``). The honest path, the
rotations and the freeze seen from a device whose clock (libfaketime) is past the expiry use the
fleet's own repository, made and published by ``fleet release``'s modules (``testing.releases``,
``LocalFleet.publish``).

Each attack is one upgrade request: the device refuses it before anything is installed, keeps
running its version, and its status says why (error code ``untrusted``, the detail starting with
the attack class).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harmony_fleet.adapters.tuf.published import current_names, push_metadata
from harmony_fleet.adapters.tuf.store import DirStore
from harmony_fleet.contracts import ErrorCode, Role
from harmony_fleet.core.upgrade.trust import target_path
from harmony_fleet.testing.localfleet import LocalFleet
from harmony_fleet.testing.releases import LocalReleases
from harmony_fleet.testing.signed_repo import Repo, open_stores, publish
from tests.e2e.conftest import INTERVAL
from tests.e2e.support import DEV, QUICK, P, invariants, reaches
from tests.fleets import Built, build_versions
from tests.helpers import eventually
from tests.security.support import local_fleet

VERSIONS = ("1.0.0", "1.5.0", "2.0.0")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, VERSIONS)


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[LocalFleet]:
    async with local_fleet(tmp_path / "fleet", built, INTERVAL) as f:
        yield f


class Published:
    """The repository and where it is served (the admin's connection)."""

    def __init__(self, repo: Repo, kv: Any, obj: Any, built: Built) -> None:
        self.repo, self.kv, self.obj = repo, kv, obj
        out, manifests = built
        self.bytes = {v: (out / m.file).read_bytes() for v, m in manifests.items()}

    async def put(self, files: dict[str, bytes], artifacts: dict[str, bytes] | None = None) -> None:
        await publish(self.kv, self.obj, files, artifacts or {})

    def object_of(self, version: str) -> str:
        target = self.repo.targets.signed.targets[target_path(version)]
        return f"{target.hashes['sha256']}.{target.path}"


async def _serve(fleet: LocalFleet, repo: Repo, built: Built, tmp_path: Path) -> Published:
    assert fleet.nc is not None
    kv, obj = await open_stores(fleet.nc.jetstream())
    published = Published(repo, kv, obj, built)
    await published.put({"1.root.json": repo.root_json()})
    root = tmp_path / "root.json"
    root.write_bytes(repo.root_json())
    await fleet.add_device(DEV, "1.0.0", trust_root=root)

    def main_beats() -> bool:
        beats = fleet.monitor.devices.get(DEV)
        last = beats.last if beats else None
        return bool(last and last.agent_version == "1.0.0" and last.role is Role.MAIN)

    await eventually(main_beats, timeout=60, what=f"{DEV} heartbeating as main on 1.0.0")
    return published


async def _refused(fleet: LocalFleet, version: str, *, running: str) -> str:
    """Ask for ``version``; check it ended Failed (``untrusted``) with the device still on
    ``running`` and nothing new installed; return the status detail (it names the attack)."""
    # published already (by the attack's own repository, or by the tooling): nothing on demand
    marker = await fleet.request_upgrade(DEV, version, timeouts=QUICK, publish=False)
    status = await reaches(fleet, marker, P.FAILED, P.SUCCEEDED, P.ROLLED_BACK, timeout=60)
    assert status.phase is P.FAILED, (status.phase, status.error_detail)
    assert status.error_code == ErrorCode.UNTRUSTED.value, (status.error_code, status.error_detail)
    await invariants(fleet, marker, current=running, phase=P.FAILED)
    assert not fleet.devices[DEV].layout.has_version(version) or version == running
    return status.error_detail


async def test_every_attack_is_refused_and_the_device_keeps_its_version(
    fleet: LocalFleet, built: Built, tmp_path: Path
) -> None:
    repo = Repo(targets_keys=3, targets_threshold=2)
    pub = await _serve(fleet, repo, built, tmp_path)
    targets_keys = repo.keys["targets"]

    # arbitrary installation: the marker names a version no signed targets list
    repo.add("1.5.0", pub.bytes["1.5.0"])
    await pub.put(repo.release(), repo.artifacts)
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("unsigned target"), detail

    # too few signatures: 1 of the 2-of-3 targets keys
    repo.add("2.0.0", pub.bytes["2.0.0"])
    await pub.put(repo.release(targets_signers=targets_keys[:1]), repo.artifacts)
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("bad signature"), detail

    # wrong signature: two keys the root does not name
    strangers = Repo().keys["root"] + Repo().keys["root"]
    stale = repo.release(targets_signers=strangers)  # its timestamp is the device's from now
    await pub.put(stale)
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("bad signature"), detail

    # freeze: a timestamp that has expired (signed by the right key)
    expired = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    await pub.put(repo.release(timestamp_expires=expired))
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("expired metadata"), detail

    # mix-and-match: the snapshot names targets vN, the file served as vN is an older targets
    old_targets = repo.encoded(repo.targets)  # signed by strangers: any older one will do
    name = f"{repo.targets.signed.version + 1}.targets.json"
    await pub.put({**repo.release(), name: old_targets})
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("mix-and-match"), detail

    # metadata rollback: the device has seen the last timestamp (the mix-and-match one was
    # valid); an older one, validly signed, is served again
    await pub.put({"timestamp.json": stale["timestamp.json"]})
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("metadata rollback"), detail

    # endless data: the artifact served is longer than the signed length
    await pub.put(repo.release())
    artifact = pub.object_of("2.0.0")
    await pub.put({}, {artifact: pub.bytes["2.0.0"] + b"\0" * 4_000_000})
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("length exceeded"), detail

    # malicious mirror: the right length, other bytes
    evil = bytearray(pub.bytes["2.0.0"])
    evil[100] ^= 0xFF
    await pub.put({}, {artifact: bytes(evil)})
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("hash mismatch"), detail

    # online key compromise: the timestamp key is rotated (a new root); metadata signed with the
    # old key is refused from then on
    old_timestamp_keys = repo.keys["timestamp"]
    await pub.put(repo.rotate("timestamp"))
    await pub.put(repo.release(timestamp_signers=old_timestamp_keys))
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("bad signature"), detail


async def _started_on_tooling(
    fleet: LocalFleet, command_prefix: tuple[str, ...] = ()
) -> LocalReleases:
    """The fleet's repository (made as ``fleet release init`` makes one) with every version
    published by the release tooling; the device pins its root."""
    for version in VERSIONS:
        await fleet.publish(version)
    await fleet.add_device(DEV, "1.0.0", command_prefix=command_prefix)

    def main_beats() -> bool:
        beats = fleet.monitor.devices.get(DEV)
        last = beats.last if beats else None
        return bool(last and last.agent_version == "1.0.0" and last.role is Role.MAIN)

    await eventually(main_beats, timeout=60, what=f"{DEV} heartbeating as main on 1.0.0")
    return fleet.releases


async def test_a_signed_upgrade_after_a_root_rotation_then_no_downgrade_below_the_floor(
    fleet: LocalFleet,
) -> None:
    releases = await _started_on_tooling(fleet)
    # ``fleet release rotate-key root``, then ``rotate-key targets``: new roots signed by the
    # old and the new root keys; the device follows the chain from the root it pinned
    repo = releases.repository()
    repo.rotate("root")
    repo.rotate("targets")
    assert fleet.nc is not None
    assert isinstance(repo.store, DirStore)
    await push_metadata(fleet.nc, repo.store, current_names(repo.store))

    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    status = await reaches(fleet, marker, P.SUCCEEDED, P.FAILED, P.ROLLED_BACK)
    assert status.phase is P.SUCCEEDED, (status.error_code, status.error_detail)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)
    followed = fleet.devices[DEV].launch.state_dir / "tuf" / "metadata" / "root_history"
    assert (followed / "3.root.json").is_file(), "the device followed the root chain"

    # 1.5.0 is signed, but below the floor (2.0.0 passed its watch) and not kept on disk
    detail = await _refused(fleet, "1.5.0", running="2.0.0")
    assert detail.startswith("downgrade below floor"), detail

    # the version kept on disk stays a local rollback, allowed
    back = await fleet.request_rollback(DEV, timeouts=QUICK)
    done = await reaches(fleet, back, P.SUCCEEDED, P.FAILED, P.ROLLED_BACK)
    assert done.phase is P.SUCCEEDED, (done.error_code, done.error_detail)
    await invariants(fleet, back, current="1.0.0", phase=P.SUCCEEDED)


@pytest.mark.skipif(shutil.which("faketime") is None, reason="needs libfaketime's faketime")
async def test_a_device_whose_clock_runs_past_the_expiry_refuses_frozen_metadata(
    fleet: LocalFleet,
) -> None:
    """Freeze seen from the device: metadata the release tooling signed, valid on the server's
    clock, expired on the device's (two days ahead under libfaketime; the timestamp lives one
    day)."""
    await _started_on_tooling(fleet, command_prefix=("faketime", "-f", "+2d"))
    detail = await _refused(fleet, "2.0.0", running="1.0.0")
    assert detail.startswith("expired metadata"), detail
