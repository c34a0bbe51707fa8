"""A whole fleet on one machine: NATS, an artifact server, the operator and supervised agents.

``fleet demo`` shows it to a person; the end-to-end tests and ``bench/upgrade.py`` drive the same
code, so what the demo shows is what the tests prove. Every device gets its own prefix
(``versions/``, ``current``), state dir and run dir under ``workdir``, runs real agent artifacts
under a process-mode :class:`~harmony_fleet.adapters.process.supervisor.Supervisor`, and
upgrades itself with the :class:`~harmony_fleet.adapters.process.runner.ProcessRunner`;
the supervisor also keeps the post-commit watch (a new main that crash-loops or goes silent
inside its window is rolled back by it). Nothing is left running after :meth:`LocalFleet.stop`,
including orphaned candidates.

Markers are written with :func:`~harmony_fleet.adapters.nats.fleet_kv.write_marker`, as
``fleet upgrade`` does; the embedded NATS server provisions the buckets as ``fleet server`` does,
and runs as it does, with TLS and authentication: the operator holds operator credentials, each
device its own device credentials (issued as ``fleet credentials issue`` does), this process the
admin's; ``cli_nats_args()`` are the flags for a ``fleet`` command against this fleet.

It runs on signed releases, as a real fleet does: :meth:`LocalFleet.start` makes a release
repository in ``workdir/release`` the way ``fleet release init`` does
(:class:`~harmony_fleet.testing.releases.LocalReleases`); every device pins its root
(:mod:`.local_device`), the operator process resolves versions through it (``--tuf-root``), and
:meth:`LocalFleet.request_upgrade` publishes the version through the release tooling the first
time it is asked for (``publish=False``: a version the repository never signed). The marker's
URL and hash stay hints. A test that must sign what the tooling never would (expired, wrongly
signed) publishes its own repository (:mod:`harmony_fleet.testing.signed_repo`) and gives its
devices that root (``add_device(trust_root=...)``).

Upgrades asked for here default to a short watch window (:data:`LOCAL_WATCH_S`): on one machine
a window of minutes would only make every demo and test wait for Succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, plan_rollback, write_marker
from harmony_fleet.adapters.nats.observe import HeartbeatGapMonitor
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.artifacts import build_artifact
from harmony_fleet.artifacts.manifest import ArtifactManifest
from harmony_fleet.contracts import (
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    device_id,
    new_upgrade_id,
    subjects,
)
from harmony_fleet.contracts import version as version_of
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from harmony_fleet.testing.artifact_server import ArtifactServer
from harmony_fleet.testing.local_device import DeviceSetup, LocalDevice, creds_path, install_device
from harmony_fleet.testing.processes import end_process

if TYPE_CHECKING:  # python-tuf is imported when a fleet starts, not when this module loads
    from harmony_fleet.adapters.tuf.repository import Release
    from harmony_fleet.testing.releases import LocalReleases

log = logging.getLogger(__name__)

#: The watch window of upgrades requested through :meth:`LocalFleet.request_upgrade` by default.
LOCAL_WATCH_S = 5.0
LOCAL_TIMEOUTS = UpgradeTimeouts(self_test_s=30, cutover_s=30, hold_s=60, watch_s=LOCAL_WATCH_S)
#: The local operator's lease name (ADR-023): restarted, it takes its lease back at once.
LOCAL_OPERATOR = "local-operator"


@dataclass
class LocalFleet:
    """See the module docstring. Use as ``async with LocalFleet(workdir) as fleet: ...``."""

    workdir: Path
    interval_s: float = 1.0
    operator_process: bool = False
    """Run the operator as a real ``fleet operator`` process (tests kill it) or in this one."""
    server: EmbeddedNats | None = None
    http: ArtifactServer | None = None
    operator: Operator | None = None
    operator_proc: subprocess.Popen[bytes] | None = None
    nc: NatsClient | None = None
    monitor: HeartbeatGapMonitor = field(default_factory=HeartbeatGapMonitor)
    devices: dict[str, LocalDevice] = field(default_factory=dict)
    artifacts: dict[str, ArtifactManifest] = field(default_factory=dict)
    _operator_task: asyncio.Task[int] | None = None
    _publishing: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One publish at a time (many devices asked for one version at once publish it once)."""

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def artifact_dir(self) -> Path:
        return self.workdir / "artifacts"

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> LocalFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifact_dir.mkdir(exist_ok=True)
        await self.init_releases()
        self.server = EmbeddedNats(
            store_dir=self.workdir / "nats", log_file=self.workdir / "nats.log"
        )
        self.server.start()
        self.server.issue("operator", "operator", self.operator_creds)
        self.http = ArtifactServer(self.artifact_dir)
        self.http.start()
        self.nc = await connect(self.server.client_options().with_name("localfleet"))
        await self.monitor.start(self.nc)
        await self.start_operator()

    @property
    def operator_creds(self) -> Path:
        return self.workdir / "operator.creds"

    def operator_nats(self) -> NatsOptions:
        """The operator's NATS options: its own credentials (role ``operator``) and the CA."""
        assert self.server is not None
        return NatsOptions(
            servers=(self.url,),
            creds_file=str(self.operator_creds),
            tls_ca_file=str(self.server.auth.ca_file),
        )

    def operator_args(self) -> list[str]:
        """The ``fleet operator`` flags of the operator process (override to add some)."""
        assert self.server is not None
        creds = ["--nats-creds", str(self.operator_creds)]
        return [
            *("--nats", self.url, *creds, *self.ca_args(), "--log-json", "--refresh", "5"),
            *("--name", LOCAL_OPERATOR),
            *("--tuf-root", str(self.releases.trust_root)),
            *("--state-dir", str(self.workdir / "operator-state")),
        ]

    def cli_nats_args(self) -> list[str]:
        """The NATS flags for a ``fleet`` command run against this fleet (as its admin)."""
        assert self.server is not None
        creds = ["--nats-creds", str(self.server.admin_creds)]
        return ["--nats", self.url, *creds, *self.ca_args()]

    def ca_args(self) -> list[str]:
        assert self.server is not None
        return ["--nats-tls-ca", str(self.server.auth.ca_file)]

    def _spawn_operator(self) -> subprocess.Popen[bytes]:
        with open(self.workdir / "operator.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "harmony_fleet", "operator", *self.operator_args()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def start_operator(self) -> None:
        if self.operator_process:
            self.operator_proc = self._spawn_operator()
            return
        self.operator = Operator(
            OperatorConfig(
                nats=self.operator_nats(),
                flush_interval_s=0.2,
                presence=PresencePolicy(refresh_s=max(5 * self.interval_s, 1.0)),
                name=LOCAL_OPERATOR,
            )
        )
        self._operator_task = asyncio.ensure_future(self.operator.run())
        async with asyncio.timeout(30):  # not wait_for: see harmony_fleet._tasks
            await self.operator.ready.wait()

    async def stop_operator(self, *, kill: bool = False) -> None:
        if self.operator_proc is not None:
            proc, self.operator_proc = self.operator_proc, None
            await end_process(proc, kill=kill)
        if self.operator is not None:
            self.operator.stop.set()
            if self._operator_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._operator_task, 15)
            self.operator = None

    async def stop(self) -> None:
        for device in self.devices.values():
            with contextlib.suppress(Exception):
                await device.stop()
        with contextlib.suppress(Exception):
            await self.stop_operator()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.monitor.stop()
                await self.nc.close()
        if self.http is not None:
            self.http.stop()
        if self.server is not None:
            self.server.stop()

    # -- releases, artifacts and devices -----------------------------------------------------
    async def init_releases(self) -> None:
        """Make the fleet's release repository (``fleet release init``), unless it exists."""
        from harmony_fleet.testing.releases import LocalReleases  # noqa: PLC0415

        await asyncio.to_thread(LocalReleases.init, self.workdir / "release")

    @property
    def releases(self) -> LocalReleases:
        """The fleet's release repository (``workdir/release``: metadata and keys)."""
        from harmony_fleet.testing.releases import LocalReleases  # noqa: PLC0415

        return LocalReleases(self.workdir / "release")

    async def publish(self, version: str) -> Release:
        """``version``'s signed release, published now if it is not yet (it must be built)."""
        assert self.nc is not None, "start the fleet first"
        releases = self.releases
        async with self._publishing:
            for release in await asyncio.to_thread(releases.repository().releases):
                if release.version == version:
                    return release
            artifact = self.artifact_dir / self.artifacts[version].file
            return await releases.publish(self.nc, artifact, version)

    def build(self, version: str, *, faults: tuple[str, ...] = ()) -> ArtifactManifest:
        manifest = build_artifact(version, self.artifact_dir, faults=faults)
        self.artifacts[version] = manifest
        return manifest

    def adopt(self, manifest: ArtifactManifest, built_in: Path) -> ArtifactManifest:
        """Serve an artifact built elsewhere (tests build once per session and share them)."""
        shutil.copy2(built_in / manifest.file, self.artifact_dir / manifest.file)
        self.artifacts[manifest.version] = manifest
        return manifest

    def url_of(self, manifest: ArtifactManifest) -> str:
        assert self.http is not None
        return f"{self.http.base_url}/{manifest.file}"

    async def add_device(
        self,
        name: str,
        version: str,
        *,
        start: bool = True,
        command_prefix: tuple[str, ...] = (),
        trust_root: Path | None = None,
        release_mirror: str | None = None,
    ) -> LocalDevice:
        """Install ``version`` (already built) under a fresh prefix and start its launcher.

        ``command_prefix`` (for example ``("faketime", "-f", "+10m")``: a device whose clock is
        ten minutes ahead) runs the device's launcher in a process of its own started behind
        it; the agents that launcher starts inherit it (:mod:`harmony_fleet.testing.launcher`).
        ``trust_root``: the root.json the device pins (default: the fleet's repository's);
        ``release_mirror``: its ``--release-mirror`` (default: the repository in NATS).
        """
        assert self.server is not None
        setup = DeviceSetup(
            devices_dir=self.workdir / "devices",
            nats_args=("--nats", self.url, *self.ca_args()),
            interval_s=self.interval_s,
            trust_root=self.releases.trust_root,
        )
        creds = creds_path(setup, name)
        creds.parent.mkdir(parents=True, exist_ok=True)
        self.server.issue("device", device_id(name), creds)
        device = install_device(
            setup,
            name,
            self.artifact_dir / self.artifacts[version].file,
            version,
            creds,
            trust_root=trust_root,
            release_mirror=release_mirror,
            command_prefix=command_prefix,
        )
        self.devices[device.name] = device
        if start:
            await device.start()
        return device

    # -- upgrades ----------------------------------------------------------------------------
    async def request_upgrade(
        self,
        device: str,
        version: str,
        *,
        timeouts: UpgradeTimeouts | None = None,
        force: bool = False,
        publish: bool = True,
    ) -> UpgradeMarker:
        """Ask ``device`` for ``version`` (published first unless ``publish=False``)."""
        assert self.nc is not None
        if publish:
            await self.publish(version)
        manifest = self.artifacts[version]
        marker = UpgradeMarker(
            upgrade_id=new_upgrade_id(),
            device_id=device_id(device),
            target_version=version_of(version),
            artifact_url=self.url_of(manifest),
            sha256=manifest.sha256,
            size=manifest.size,
            requested_at=time.time(),
            requested_by="localfleet",
            force=force,
            timeouts=timeouts or LOCAL_TIMEOUTS,
        )
        await write_marker(self.nc, marker)
        return marker

    async def request_rollback(
        self, device: str, *, timeouts: UpgradeTimeouts | None = None, force: bool = False
    ) -> UpgradeMarker:
        """What ``fleet rollback DEVICE`` does: back to the previous version, kept on disk."""
        assert self.nc is not None
        marker = await plan_rollback(
            self.nc, device, timeouts=timeouts or LOCAL_TIMEOUTS, force=force, by="localfleet"
        )
        await write_marker(self.nc, marker)
        return marker

    async def status(self, device: str) -> UpgradeStatus | None:
        assert self.nc is not None
        kv = await FleetKV(self.nc).statuses()
        entry = await kv.get(subjects.kv_key(device))
        return entry.value if entry is not None else None

    async def record(self, device: str) -> DeviceRecord | None:
        assert self.nc is not None
        kv = await FleetKV(self.nc).devices()
        entry = await kv.get(subjects.kv_key(device))
        return entry.value if entry is not None else None

    def agent_processes(self, device: str) -> list[int]:
        """PIDs of every agent process of ``device`` in this fleet (main and candidates).

        Matched by device id *and* this fleet's state dir for it: another fleet on the same
        machine (a concurrent test run, a demo) may well use the same device name.
        """
        needle = f"--device-id\x00{device}\x00".encode()
        local = self.devices.get(device)
        if local is not None:
            needle += f"--state-dir\x00{local.launch.state_dir}\x00".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline and b"agent\x00run" in cmdline and b"--self-test" not in cmdline:
                pids.append(int(entry.name))
        return pids
