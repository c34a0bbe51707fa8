"""Wiring the upgrade driver (``agent.upgrade``) to NATS inside the agent process.

The driver is pure orchestration over seams; this module gives it its inputs and outputs:

* the device's marker (KV ``fleet_upgrade_marker/<device>``, watched: first the current value,
  then every change) -> :meth:`UpgradeDriver.run_marker`;
* the device's own heartbeat subject (so the old agent sees its candidate beat) ->
  :meth:`UpgradeDriver.record_heartbeat`;
* ``upgrade_stop`` commands -> :meth:`UpgradeDriver.on_stop` (the agent's command handler);
* statuses -> KV ``fleet_upgrade_status/<device>`` through :class:`KVStatusSink`, trimmed to the
  bucket's value limit (:func:`~harmony_fleet.adapters.nats.fleet_kv.fit_status`);
* after a commit, :meth:`UpgradeDriver.wait_handover` -> flush the status, exit 0: the service
  manager starts ``current`` (now the new version) as the main instance;
* the post-commit watch and what an upgrade leaves on disk -> :class:`PostCommitFiles` in
  ``<state>/run`` (the same folder the process executor and its supervisor use), and the
  liveness file the main instance touches on every heartbeat tick (with a ``WATCHDOG=1`` ping
  to systemd when the unit asked for one). The new main does not say Succeeded when it starts:
  where a launcher keeps the watch (the supervisor; the unit ``fleet agent install`` writes,
  see :func:`is_watched`) its machine holds Committed until the window has passed (the launcher
  may roll it back inside it), then writes Succeeded itself.

Only the main instance runs this; a candidate never acts on markers. The buckets are opened, never
created (the operator or the server bootstrap creates them): until they exist the agent retries.

``--keep-versions`` (``FLEET_KEEP_VERSIONS``, default 2; ``AgentConfig.keep_versions``) is how
many versions garbage collection keeps after a successful upgrade; the running and the previous
version are always kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from harmony_fleet.adapters.executors.launch import LaunchSpec
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import STATUSES, FleetKV, fit_status
from harmony_fleet.adapters.nats.kv import TypedKV
from harmony_fleet.adapters.os.layout import AgentLayout
from harmony_fleet.adapters.os.post_commit import (
    RUN_DIR,
    WATCHED_BY_ENV,
    PostCommitFiles,
    liveness_file,
)
from harmony_fleet.adapters.os.state_store import FileStateStore
from harmony_fleet.adapters.systemd.notify import WatchdogNotifier
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.faults import Faults
from harmony_fleet.agent.runtime import Agent, Extension
from harmony_fleet.agent.upgrade import LoopClock, UpgradeDriver
from harmony_fleet.contracts import (
    HEARTBEAT,
    Role,
    UpgradeMarker,
    UpgradeStatus,
    subjects,
)
from harmony_fleet.core.upgrade.executor import UpgradeExecutor
from harmony_fleet.core.upgrade.watch import stale_after
from harmony_fleet.errors import ConfigError, InvalidMessage, Unavailable

log = logging.getLogger(__name__)


class KVStatusSink:
    """The status sink over NATS KV (the agent is the only writer of its device's key)."""

    def __init__(self) -> None:
        self.kv: TypedKV[UpgradeStatus] | None = None
        self.nc: NatsClient | None = None

    @property
    def connected(self) -> bool:
        """What the NATS client knows: False while it reconnects after losing the server."""
        return self.nc is not None and bool(self.nc.is_connected)

    async def write(self, status: UpgradeStatus) -> None:
        """Write ``status``, trimmed to fit the bucket (log tail first, then details)."""
        if self.kv is None:
            raise Unavailable("status bucket not open yet")
        fitted = fit_status(status, STATUSES.max_value_size)
        if fitted is not status:
            log.warning("status trimmed to fit the bucket", extra={"phase": status.phase.value})
        await self.kv.put(subjects.kv_key(status.device_id), fitted)


def upgrade_extension(driver: UpgradeDriver, sink: KVStatusSink) -> Extension:
    """An :data:`Extension` that runs ``driver`` inside ``agent`` (see the module docstring)."""

    async def upgrades(agent: Agent, nc: NatsClient) -> None:
        device = agent.config.device_id
        kv = FleetKV(nc)
        while True:
            try:
                markers = await kv.markers()
                sink.kv = await kv.statuses()
                sink.nc = nc
                break
            except Exception as exc:
                log.warning("upgrade buckets not available yet", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
        await driver.resume_after_restart()

        async def on_heartbeat(msg: Any) -> None:
            try:
                hb = HEARTBEAT.decode(msg.data)
            except InvalidMessage:
                return  # the operator logs bad heartbeats; the agent only needs good ones
            await driver.record_heartbeat(hb)

        await nc.subscribe(subjects.heartbeat(device), cb=on_heartbeat)
        agent.spawn(_handover(agent, driver), "upgrade-handover")
        await _watch_marker(markers, subjects.kv_key(device), driver)

    return upgrades


async def _handover(agent: Agent, driver: UpgradeDriver) -> None:
    await driver.wait_handover()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(driver.flush_status(), 10.0)
    agent.log.info("upgrade committed: handing over to the new version")
    agent.request_exit(0)


async def _watch_marker(markers: TypedKV[UpgradeMarker], key: str, driver: UpgradeDriver) -> None:
    """Feed every value of the device's marker to the driver, for ever."""
    async for entry in markers.values(key):
        await driver.run_marker(entry.value)


#: File (in the state dir) where the driver keeps its durable record.
STATE_FILE = "upgrade-state.json"


def make_executor(config: AgentConfig, layout: AgentLayout, launch: LaunchSpec) -> UpgradeExecutor:
    """The real executor named by ``--executor`` (imported lazily: systemd is optional)."""
    run_dir = config.state_dir / RUN_DIR
    if config.executor == "process":
        from harmony_fleet.adapters.executors.process import ProcessExecutor  # noqa: PLC0415

        return ProcessExecutor(layout, launch, run_dir=run_dir, running_version=_running())
    if config.executor == "systemd":
        from harmony_fleet.adapters.systemd.executor import (  # noqa: PLC0415
            SystemdUpgradeExecutor,
        )

        return SystemdUpgradeExecutor(layout, launch, service=config.service)
    raise ConfigError(f"unknown --executor {config.executor!r} (process or systemd)")


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


def _running() -> str:
    from harmony_fleet._version import __version__  # noqa: PLC0415

    return __version__


def build_agent(
    config: AgentConfig,
    *,
    faults: Faults,
    launch: LaunchSpec | None = None,
    executor: UpgradeExecutor | None = None,
) -> Agent:
    """The agent for ``config``; with ``--prefix`` (main role), able to upgrade itself."""
    agent = Agent(config, faults=faults)
    if config.install_prefix is None or config.role is not Role.MAIN:
        return agent
    layout = AgentLayout(config.install_prefix)
    if executor is None:
        if launch is None:
            raise ConfigError("an upgradable agent needs its launch arguments")
        executor = make_executor(config, layout, launch)
    sink = KVStatusSink()
    run_dir = config.state_dir / RUN_DIR
    agent.liveness_file = liveness_file(run_dir)
    agent.watchdog = WatchdogNotifier.from_environ()
    after_commit = PostCommitFiles(
        layout,
        run_dir,
        stale_after_s=stale_after(config.heartbeat_interval_s),
        watched=is_watched(config.executor),
    )
    driver = UpgradeDriver(
        device_id=config.device_id,
        instance_id=agent.instance_id,
        running_version=agent.version,
        executor=executor,
        status_sink=sink,
        state_store=FileStateStore(config.state_dir / STATE_FILE),
        clock=LoopClock(),
        after_commit=after_commit,
        keep_versions=config.keep_versions,
    )
    agent.commands.stop_handler = driver
    agent.add_extension(upgrade_extension(driver, sink))
    agent.add_extension(_close_on_exit(driver))
    return agent


def _close_on_exit(driver: UpgradeDriver) -> Extension:
    async def closer(agent: Agent, _nc: NatsClient) -> None:
        try:
            await agent.stop.wait()
        finally:
            await driver.close()

    return closer
