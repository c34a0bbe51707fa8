"""The agent's composition root: :func:`build_agent` puts one agent process together.

A plain agent is :class:`~harmony_fleet.agent.runtime.Agent` with its config. A main instance
started with ``--prefix`` can also upgrade itself; then it gets

* the device's two seams (``core.upgrade.device``): its files (:class:`AgentFiles`, the same on
  every platform) and its candidate runner, chosen by ``--executor`` (:func:`make_runner`);
* the device's signed releases (``agent.upgrade.trust``: the trust root pinned in the state dir,
  python-tuf loaded when an upgrade starts) that every download is verified against;
* the upgrade driver over them, wired to NATS by ``agent.upgrade.wiring`` (marker watch, heartbeats,
  status KV, the handover after a commit);
* the liveness file the main overwrites on every heartbeat tick and, under the unit ``fleet agent
  install`` writes, systemd's watchdog pings (the launcher's post-commit watch reads both);
* whether a launcher keeps the post-commit watch at all (:func:`is_watched`): where one does,
  the new main holds Committed until the window has passed, then writes Succeeded itself.

Everything is passed to ``Agent(...)`` when it is made; nothing is set on it afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.device.notes import RUN_DIR, WATCHED_BY_ENV, liveness_file
from harmony_fleet.adapters.device.state_store import FileStateStore
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.systemd.notify import WatchdogNotifier
from harmony_fleet.adapters.tuf.pin import pin_root, pinned_root
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.faults import Faults
from harmony_fleet.agent.runtime import RUNNING_VERSION, Agent, Extension
from harmony_fleet.agent.upgrade import LoopClock, UpgradeDriver
from harmony_fleet.agent.upgrade.trust import LazyReleases, releases_extension
from harmony_fleet.agent.upgrade.wiring import KVStatusSink, upgrade_extension
from harmony_fleet.contracts import Role, new_instance_id
from harmony_fleet.core.upgrade.device import CandidateRunner, DeviceFiles
from harmony_fleet.core.upgrade.watch import stale_after
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: File (in the state dir) where the driver keeps its durable record.
STATE_FILE = "upgrade-state.json"


def make_runner(config: AgentConfig, layout: AgentLayout, launch: LaunchSpec) -> CandidateRunner:
    """The candidate runner named by ``--executor`` (imported lazily: systemd is optional)."""
    if config.executor == "process":
        from harmony_fleet.adapters.process.runner import ProcessRunner  # noqa: PLC0415

        return ProcessRunner(layout, launch, run_dir=config.state_dir / RUN_DIR)
    if config.executor == "systemd":
        from harmony_fleet.adapters.systemd.runner import SystemdRunner  # noqa: PLC0415

        return SystemdRunner(layout, launch, service=config.service)
    raise ConfigError(f"unknown --executor {config.executor!r} (process or systemd)")


def make_files(
    config: AgentConfig, layout: AgentLayout, releases: LazyReleases | None = None
) -> AgentFiles:
    """The device's files for ``config`` (the watch notes in ``<state>/run``); downloads are
    verified against the signed ``releases`` (without them, refused: ``no trust root``)."""
    return AgentFiles(
        layout,
        running_version=RUNNING_VERSION,
        run_dir=config.state_dir / RUN_DIR,
        watched=is_watched(config.executor),
        stale_after_s=stale_after(config.heartbeat_interval_s),
        access=config.artifacts,
        trust=releases,
    )


def make_releases(config: AgentConfig) -> LazyReleases | None:
    """The device's signed releases: pin ``--trust-root`` if given; None with no pinned root."""
    if config.trust_root is not None:
        pin_root(config.state_dir, config.trust_root)
    if not pinned_root(config.state_dir).is_file():
        log.warning("no trust root pinned: upgrades that download are refused")
        return None
    return LazyReleases(config.state_dir, mirror=config.release_mirror, access=config.artifacts)


def is_watched(executor: str, environ: Mapping[str, str] | None = None) -> bool:
    """Does a launcher keep the post-commit watch for this main?

    The process-mode supervisor always does; under systemd, the unit ``fleet agent install``
    writes does, and says so (``FLEET_POST_COMMIT_WATCH=systemd``). A unit written by hand
    without the hooks does not: then the new main says Succeeded at once rather than hold
    Committed for a window nobody watches.
    """
    if executor == "process":
        return True
    return (os.environ if environ is None else environ).get(WATCHED_BY_ENV) == "systemd"


def build_agent(
    config: AgentConfig,
    *,
    faults: Faults,
    launch: LaunchSpec | None = None,
    files: DeviceFiles | None = None,
    runner: CandidateRunner | None = None,
) -> Agent:
    """The agent for ``config``; with ``--prefix`` (main role), able to upgrade itself."""
    if config.install_prefix is None or config.role is not Role.MAIN:
        return Agent(config, faults=faults)
    layout = AgentLayout(config.install_prefix)
    if runner is None:
        if launch is None:
            raise ConfigError("an upgradable agent needs its launch arguments")
        runner = make_runner(config, layout, launch)
    instance_id = new_instance_id()
    sink = KVStatusSink()
    releases = make_releases(config)
    driver = UpgradeDriver(
        device_id=config.device_id,
        instance_id=instance_id,
        running_version=RUNNING_VERSION,
        files=files or make_files(config, layout, releases),
        runner=runner,
        status_sink=sink,
        state_store=FileStateStore(config.state_dir / STATE_FILE),
        clock=LoopClock(),
        keep_versions=config.keep_versions,
    )
    return Agent(
        config,
        faults=faults,
        instance_id=instance_id,
        stop_handler=driver,
        liveness_file=liveness_file(config.state_dir / RUN_DIR),
        watchdog=WatchdogNotifier.from_environ(
            tighten_to_s=stale_after(config.heartbeat_interval_s)
        ),
        extensions=[
            upgrade_extension(driver, sink),
            _close_on_exit(driver),
            *([releases_extension(releases)] if releases is not None else []),
        ],
    )


def _close_on_exit(driver: UpgradeDriver) -> Extension:
    async def closer(agent: Agent, _nc: NatsClient) -> None:
        try:
            await agent.stop.wait()
        finally:
            await driver.close()

    return closer
