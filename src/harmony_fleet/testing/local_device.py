"""One device of a :class:`~harmony_fleet.testing.localfleet.LocalFleet`: installed under its own
prefix, launched as ``fleet agent install`` would launch it, on signed releases.

:func:`install_device` puts a built artifact at ``<prefix>/versions/<v>/agent``, points
``current`` at it, and makes the :class:`LocalDevice`: its launch spec (the agent's flags: NATS
and the device's own credentials, ``--trust-root`` pinning the release repository's root, an
optional ``--release-mirror``) and its launcher (a process-mode
:class:`~harmony_fleet.adapters.process.supervisor.Supervisor` in this process, or a
:class:`~harmony_fleet.testing.launcher.LauncherProcess` behind a command prefix such as
``faketime``). There is no unsigned way to run a device: every one pins a root.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.notes import RUN_DIR
from harmony_fleet.adapters.process.runner import ProcessRunner
from harmony_fleet.adapters.process.supervisor import Supervisor
from harmony_fleet.contracts import device_id
from harmony_fleet.core.upgrade.watch import RollbackNote
from harmony_fleet.testing.launcher import LauncherProcess

log = logging.getLogger(__name__)


@dataclass
class LocalDevice:
    name: str
    prefix: Path
    layout: AgentLayout
    launch: LaunchSpec
    supervisor: Supervisor
    launcher: LauncherProcess | None = None
    """Set when the device runs behind a command prefix (see :func:`install_device`): then
    ``supervisor`` runs in that process, not in this one."""

    @property
    def run_dir(self) -> Path:
        """Logs and pid files of the main and the candidates (the agent's ``<state>/run``)."""
        return self.launch.state_dir / RUN_DIR

    @property
    def rollbacks(self) -> list[RollbackNote]:
        """Post-commit rollbacks the device's supervisor performed (newest last; an in-process
        supervisor only: a device behind a command prefix reports them in its status)."""
        return self.supervisor.rollbacks

    def runner(self) -> ProcessRunner:
        """A candidate runner over this device's layout (to find and stop orphaned candidates)."""
        return ProcessRunner(self.layout, self.launch, run_dir=self.run_dir)

    async def start(self) -> None:
        """Start the device's launcher (again, after :meth:`stop`)."""
        await (self.launcher or self.supervisor).start()

    async def stop(self) -> None:
        """Stop the launcher and its main, then any candidate left behind: the device is off."""
        await (self.launcher or self.supervisor).stop()
        runner = self.runner()
        for pid_file in self.run_dir.glob("candidate-*.pid"):
            uid = pid_file.name.removeprefix("candidate-").removesuffix(".pid")
            with contextlib.suppress(Exception):
                await runner.stop_candidate(uid)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class DeviceSetup:
    """What every device of one fleet shares (the fleet's NATS, its interval, its root)."""

    devices_dir: Path
    nats_args: tuple[str, ...]
    """``--nats URL`` and ``--nats-tls-ca``; each device adds its own ``--nats-creds``."""
    interval_s: float
    trust_root: Path
    """The release repository's root.json every device pins unless given another."""


def install_device(
    setup: DeviceSetup,
    name: str,
    artifact: Path,
    version: str,
    creds: Path,
    *,
    trust_root: Path | None = None,
    release_mirror: str | None = None,
    command_prefix: tuple[str, ...] = (),
) -> LocalDevice:
    """Install ``artifact`` as ``version`` for device ``name`` (not started; see the module).

    ``creds``: where the device's credentials are to be found (issued by the caller, in
    ``<devices_dir>/<name>/device.creds``: :func:`creds_path`). ``trust_root``: another root
    than the fleet's (a test's own repository). ``release_mirror``: the agent's
    ``--release-mirror`` (the signed repository over HTTP(S) instead of NATS).
    """
    dev = device_id(name)
    prefix = setup.devices_dir / dev / "opt"
    layout = AgentLayout(prefix)
    target = layout.version_dir(version)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(artifact, target / "agent")
    layout.swap_current(version)
    mirror = ("--release-mirror", release_mirror) if release_mirror else ()
    launch = LaunchSpec(
        device_id=dev,
        state_dir=prefix.parent / "state",
        nats_args=(*setup.nats_args, "--nats-creds", str(creds)),
        extra_args=(
            *("--heartbeat-interval", str(setup.interval_s), "--executor", "process"),
            *("--prefix", str(prefix), "--log-json"),
            *("--trust-root", str(trust_root or setup.trust_root), *mirror),
        ),
    )
    supervisor = Supervisor(layout, launch, run_dir=launch.state_dir / RUN_DIR)
    launcher = None
    if command_prefix:
        log_file = launch.state_dir / "launcher.log"
        launcher = LauncherProcess(command_prefix, prefix, launch, log_file=log_file)
    return LocalDevice(dev, prefix, layout, launch, supervisor, launcher)


def creds_path(setup: DeviceSetup, name: str) -> Path:
    """Where device ``name``'s credentials go (beside its prefix)."""
    return setup.devices_dir / device_id(name) / "device.creds"
