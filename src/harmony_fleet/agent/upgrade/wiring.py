"""Wiring the upgrade driver (``agent.upgrade``) to NATS inside the agent process.

The driver is pure orchestration over seams; this module gives it its inputs and outputs:

* the device's marker (KV ``fleet_upgrade_marker/<device>``, watched: first the current value,
  then every change) -> :meth:`UpgradeDriver.run_marker`;
* the device's own heartbeat subject (so the old agent sees its candidate beat) ->
  :meth:`UpgradeDriver.record_heartbeat`, subscribed only while a candidate's beat can change
  something (:func:`hear_candidates`): an idle main is sent no heartbeats;
* ``upgrade_stop`` commands -> :meth:`UpgradeDriver.on_stop` (the agent's command handler);
* statuses -> KV ``fleet_upgrade_status/<device>`` through :class:`KVStatusSink`, trimmed to the
  bucket's value limit (:func:`~harmony_fleet.adapters.nats.fleet_kv.fit_status`);
* after a commit, :meth:`UpgradeDriver.wait_handover` -> flush the status, exit 0: the service
  manager starts ``current`` (now the new version) as the main instance.

Only the main instance runs this; a candidate never acts on markers. The buckets are opened, never
created (the operator or the server bootstrap creates them): until they exist the agent retries.

The agent, the driver and the device's seams are put together in ``agent.build``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import STATUSES, FleetKV, fit_status
from harmony_fleet.adapters.nats.kv import TypedKV
from harmony_fleet.agent.runtime import Agent, Extension
from harmony_fleet.agent.upgrade.driver import HEARTBEAT_STATES, UpgradeDriver
from harmony_fleet.contracts import (
    HEARTBEAT,
    UpgradeMarker,
    UpgradeStatus,
    subjects,
)
from harmony_fleet.errors import InvalidMessage, Unavailable

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
            if msg.headers or msg.reply:  # delivered by JetStream, not sent by an instance
                return
            try:
                hb = HEARTBEAT.decode(msg.data)
            except InvalidMessage:
                return  # the operator logs bad heartbeats; the agent only needs good ones
            await driver.record_heartbeat(hb)

        agent.spawn(hear_candidates(nc, driver, on_heartbeat), "upgrade-heartbeats")
        agent.spawn(_handover(agent, driver), "upgrade-handover")
        await _watch_marker(nc, markers, subjects.kv_key(device), driver)

    return upgrades


async def hear_candidates(
    nc: Any, driver: UpgradeDriver, on_heartbeat: Callable[[Any], Awaitable[None]]
) -> None:
    """Subscribe ``on_heartbeat`` to the device's heartbeat subject while the driver is in a
    state where a candidate's beat can change something (``HEARTBEAT_STATES``: from the
    candidate's start to the commit or the revert), and only then. Outside an upgrade the main
    has no use for a beat, and each one received is work on an idle device (a candidate left
    beside it, the heartbeats of another instance of the same device)."""
    subject = subjects.heartbeat(driver.device_id)

    async def until(wanted: bool) -> None:
        while (driver.snapshot.state in HEARTBEAT_STATES) is not wanted:
            driver.state_changed.clear()
            await driver.state_changed.wait()

    while True:
        await until(True)
        sub = await nc.subscribe(subject, cb=on_heartbeat)
        try:
            await until(False)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _handover(agent: Agent, driver: UpgradeDriver) -> None:
    await driver.wait_handover()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(driver.flush_status(), 10.0)
    agent.log.info("upgrade committed: handing over to the new version")
    agent.request_exit(0)


async def _watch_marker(
    nc: NatsClient, markers: TypedKV[UpgradeMarker], key: str, driver: UpgradeDriver
) -> None:
    """Feed every value of the device's marker to the driver, for ever (direct gets woken by
    the key's subject: a device's credentials allow no consumer, docs/security.md)."""
    async for entry in markers.follow(nc, key):
        await driver.run_marker(entry.value)
