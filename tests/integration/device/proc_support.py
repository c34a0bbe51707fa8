"""Helpers for the process-executor and supervisor tests: artifacts, markers, trees, processes,
and the signed mirror every download comes from (:class:`SignedMirror`)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.process.runner import ProcessRunner
from harmony_fleet.adapters.tuf.pin import pin_root
from harmony_fleet.adapters.tuf.repository import Release
from harmony_fleet.agent.upgrade.trust import LazyReleases
from harmony_fleet.artifacts import ArtifactManifest
from harmony_fleet.contracts import UpgradeMarker, UpgradeTimeouts
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.testing.releases import LocalReleases

DEVICE = "edge-1"
OLD = "1.0.0"
NEW = "2.0.0"
SELF_TEST_FAILS = "2.1.0"
SELF_TEST_HANGS = "2.2.0"
CRASHES = "2.3.0"
#: version -> faults baked into its artifact
BUILDS: dict[str, tuple[str, ...]] = {
    OLD: (),
    NEW: (),
    SELF_TEST_FAILS: ("self-test-fail",),
    SELF_TEST_HANGS: ("self-test-hang",),
    CRASHES: ("crash-after=0.5",),
}


@dataclass(frozen=True)
class Built:
    path: Path
    manifest: ArtifactManifest

    @property
    def body(self) -> bytes:
        return self.path.read_bytes()


def install(layout: AgentLayout, built: Built) -> None:
    """Put a built artifact at ``versions/<v>/agent`` as an install would."""
    home = layout.version_dir(built.manifest.version)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built.path, home / "agent")
    os.chmod(home / "agent", 0o755)


#: The URL a marker names: a hint only, never fetched (the signed mirror's target is).
HINT = "https://hints.example/agent.pyz?token=never-fetched"


class SignedMirror:
    """A release repository made by the release tooling (``fleet release init``, then each
    version signed as ``publish`` signs it: :class:`LocalReleases`), laid out in ``root`` as a
    mirror (``metadata/``, ``targets/``) and served over real HTTP under ``/mirror``: what a
    device reads with ``--release-mirror``. Tests change what is served by changing ``root``
    (other bytes, a missing target); requests are in ``httpserver.log``."""

    def __init__(self, folder: Path, httpserver: HTTPServer) -> None:
        self.releases = LocalReleases.init(folder / "repo")
        self.root = folder / "mirror"
        self.root.mkdir(parents=True, exist_ok=True)
        self.httpserver = httpserver
        httpserver.expect_request(re.compile(r"^/mirror/")).respond_with_handler(self._serve)

    @property
    def url(self) -> str:
        return self.httpserver.url_for("/mirror")

    def _serve(self, request: Request) -> Response:
        path = self.root / request.path.removeprefix("/mirror/")
        if not path.is_file():
            return Response("not on this mirror", status=404)
        return Response(path.read_bytes())

    def sign(self, version: str, body: bytes) -> Release:
        """``body`` signed as ``version`` and on the mirror, with the metadata that signs it."""
        artifact = self.root.parent / f"artifact-{version}"
        artifact.write_bytes(body)
        release = self.releases.sign(artifact, version)
        self.releases.mirror(self.root)
        return release

    def target(self, release: Release) -> Path:
        """Where the mirror keeps ``release``'s bytes (``targets/<sha256>.<path>``)."""
        return self.root / "targets" / release.object_name

    def target_requests(self) -> int:
        """How many times an artifact was asked for (metadata requests not counted)."""
        return sum(1 for request, _ in self.httpserver.log if "/targets/" in request.path)

    def trust(self, state_dir: Path, *, url: str | None = None) -> LazyReleases:
        """The device's signed releases (as the agent makes them): the root pinned in
        ``state_dir``, the mirror at ``url`` (default: this one)."""
        state_dir.mkdir(parents=True, exist_ok=True)
        pin_root(state_dir, self.releases.trust_root)
        return LazyReleases(state_dir, mirror=url or self.url)


def marker(
    built: Built, url: str = HINT, *, uid: str = "u-1", sha256: str | None = None
) -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=uid,
        device_id=DEVICE,
        target_version=built.manifest.version,
        artifact_url=url,
        sha256=sha256 or built.manifest.sha256,
        size=built.manifest.size,
        requested_at=time.time(),
        timeouts=UpgradeTimeouts(download_s=30),
    )


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by SHA-256 and mode, links by target, folders by mode."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = oct(stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = f"{mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            else:
                out[rel] = f"dir {mode}"
    return out


def live_pids_with(fragment: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``fragment``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if fragment in cmd and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@dataclass
class ProcDevice:
    """The two seams of a process-mode device, as the driver holds them."""

    files: AgentFiles
    runner: ProcessRunner

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
        """What the driver's revert does: stop the candidate, then put the files back."""
        await self.runner.stop_candidate(upgrade_id)
        await self.files.revert(upgrade_id=upgrade_id, previous=previous, target=target)
