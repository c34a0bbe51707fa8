"""Fixtures of the systemd tier: a booted container, NATS and artifacts served from the host.

The tier needs root, ``debootstrap`` and ``systemd-nspawn``. Without them it skips at once with
the reason; they are installed here only when ``CI`` is set or ``FLEET_SYSTEMD_TESTS=1``. NATS
and the HTTP artifact server run on the host on 127.0.0.1: the container shares the host's
network (no ``--private-network``), so the agents inside reach them at the same address.

NATS is secure as ``fleet server`` runs it (TLS, JWT authentication). Each test's device gets its
own credentials from ``fleet credentials issue --device`` on the host, copied into the
container's ``/root`` (as a person would ``scp`` them) and installed from there with
``fleet agent install --nats-creds … --nats-tls-ca …``; the operator here uses an operator
credential, the test's own client and ``fleet rollback`` the admin's.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.artifacts import ArtifactManifest, build_artifact
from harmony_fleet.testing.releases import LocalReleases
from tests.systemd.nspawn import CACHE, Machine, build_rootfs, remove_tree
from tests.systemd.support import ARTIFACTS_IN_CONTAINER, FleetNats, Served

TOOLS = ("debootstrap", "systemd-nspawn", "nsenter")
INSTALL = "apt-get update && apt-get install -y debootstrap systemd-container"
OLD, NEW, SILENT = "1.0.0", "2.0.0", "2.1.0"
"""Versions built for the tier; ``SILENT`` carries the ``no-heartbeat`` fault."""
CRASHY, HUSHED = "2.2.0", "2.3.0"
"""Pass their self-test and heartbeat as a candidate; as the main instance ``CRASHY`` crashes
(exit 3) a few seconds after each start, ``HUSHED`` stops heartbeating but keeps running."""
MAIN_FAULT_AFTER_S = 4


def _missing() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


@pytest.fixture(scope="session")
def systemd_tier() -> dict[str, float]:
    """Skip (quickly, with the reason) unless this machine can run the tier; the timings."""
    if os.geteuid() != 0:
        pytest.skip("systemd tier: needs root (debootstrap, systemd-nspawn, nsenter)")
    if _missing():
        if not (os.environ.get("CI") or os.environ.get("FLEET_SYSTEMD_TESTS") == "1"):
            pytest.skip(
                f"systemd tier: {', '.join(_missing())} missing; `{INSTALL}` "
                "or set FLEET_SYSTEMD_TESTS=1 to let the tier install them"
            )
        subprocess.run(["sh", "-c", INSTALL], check=True, capture_output=True)
        if _missing():
            pytest.fail(f"systemd tier: still missing after install: {_missing()}")
    return {}


@pytest.fixture(scope="session")
def rootfs(systemd_tier: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("debootstrap") / "debootstrap.log"
    path, seconds = build_rootfs(log)
    systemd_tier["debootstrap_s"] = seconds
    return path


@dataclass(frozen=True)
class Built:
    folder: Path
    manifests: dict[str, ArtifactManifest]


@pytest.fixture(scope="session")
def artifacts(systemd_tier: dict[str, float], tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Real agent artifacts, built from this tree (``SILENT`` never heartbeats)."""
    out = tmp_path_factory.mktemp("artifacts")
    started = time.monotonic()
    manifests = {v: build_artifact(v, out) for v in (OLD, NEW)}
    manifests[SILENT] = build_artifact(SILENT, out, faults=("no-heartbeat",))
    after = MAIN_FAULT_AFTER_S
    manifests[CRASHY] = build_artifact(CRASHY, out, faults=(f"crash-as-main-after={after}",))
    manifests[HUSHED] = build_artifact(
        HUSHED, out, faults=(f"stop-heartbeat-as-main-after={after}",)
    )
    systemd_tier["artifacts_s"] = time.monotonic() - started
    return Built(out, manifests)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def served(artifacts: Built) -> Iterator[Served]:
    handler = functools.partial(_Quiet, directory=str(artifacts.folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.server_address[1]}", artifacts.manifests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def host_nats(
    systemd_tier: dict[str, float], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedNats]:
    tmp = tmp_path_factory.mktemp("nats")
    server = EmbeddedNats(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def machine(
    systemd_tier: dict[str, float],
    rootfs: Path,
    artifacts: Built,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Machine]:
    """The container, booted from a private copy of the cached rootfs (same filesystem)."""
    copy = CACHE / f"run-{os.getpid()}"
    remove_tree(copy)
    started = time.monotonic()
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(copy)], check=True)
    systemd_tier["copy_s"] = time.monotonic() - started
    box = Machine(
        rootfs=copy,
        log=tmp_path_factory.mktemp("nspawn") / "nspawn.log",
        extra_binds=[f"{artifacts.folder}:{ARTIFACTS_IN_CONTAINER}"],
    )
    try:
        systemd_tier["boot_s"] = box.boot()
        yield box
    finally:
        box.shutdown()
        remove_tree(copy)
        if systemd_tier:
            figures = ", ".join(f"{k}={v:.1f}" for k, v in sorted(systemd_tier.items()))
            print(f"\nsystemd tier timings (s): {figures}", file=sys.stderr)


@pytest.fixture(scope="session")
def releases(
    systemd_tier: dict[str, float],
    host_nats: EmbeddedNats,
    artifacts: Built,
    tmp_path_factory: pytest.TempPathFactory,
) -> LocalReleases:
    """A signed release repository (as ``fleet release init`` makes it) with every built
    version published into the host's NATS, as a release manager would: devices pin its root
    and fetch what they install from the ``fleet_artifacts`` object store, verified."""
    repo = LocalReleases.init(tmp_path_factory.mktemp("release") / "repo")

    async def publish() -> None:
        nc = await connect(host_nats.client_options().with_name("release-manager"))
        try:
            for v, manifest in artifacts.manifests.items():
                await repo.publish(nc, artifacts.folder / manifest.file, v)
        finally:
            await nc.close()

    started = time.monotonic()
    asyncio.run(publish())
    systemd_tier["publish_s"] = time.monotonic() - started
    return repo


@pytest.fixture(scope="session")
def fleet_nats(
    host_nats: EmbeddedNats, releases: LocalReleases, tmp_path_factory: pytest.TempPathFactory
) -> FleetNats:
    """The host's NATS with the credentials of this side: the admin's, and an operator's; and
    the release repository's root, which every installed device pins."""
    creds = host_nats.issue(
        "operator", "operator", tmp_path_factory.mktemp("operator") / "operator.creds"
    )
    return FleetNats(
        url=host_nats.url,
        store_dir=host_nats.store_dir,
        ca=host_nats.auth.ca_file,
        admin_creds=host_nats.admin_creds,
        operator_creds=creds,
        trust_root=releases.trust_root,
    )


@pytest.fixture
async def host_nc(host_nats: EmbeddedNats) -> AsyncIterator[NatsClient]:
    """A client of the host's NATS for the test itself (the admin)."""
    client = await connect(host_nats.client_options().with_name("systemd-tier"))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def device(machine: Machine, request: pytest.FixtureRequest) -> Iterator[str]:
    """A device id for one test; whatever it installed is uninstalled (and purged) after it."""
    name = "sd-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    try:
        yield name
    finally:
        if machine.pid1:
            journal = machine.run(
                *["journalctl", "--no-pager", "-o", "short-monotonic", "-n", "400"],
                *["-u", "harmony-fleet-agent*"],
                check=False,
            ).stdout
            saved = machine.log.with_name(f"journal-{name}.txt")
            saved.write_text(journal)
            print(f"\n{name}: the agents' journal is in {saved}", file=sys.stderr)
            done = machine.run(
                sys.executable,
                str(Path(__file__).with_name("fleet_in_container.py")),
                *["agent", "uninstall", "--purge"],
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
