"""Log streaming from devices: the agent ships its own log and chosen units' journals to NATS.

:func:`enable_log_shipping` is the one entry point: it attaches a non-blocking logging handler
right away (so the lines written while the agent is still connecting are kept, within bounds)
and registers an agent extension that, once connected, waits (bounded) until the ``FLEET_LOGS``
stream exists, starts the journal readers and runs the shipping loop. The agent never creates the
stream: the operator or the server bootstrap does. See docs/logs.md.

The stream's definition (``adapters.nats.logstream`` over ``adapters.nats.fleet_kv``, which
brings the upgrade protocol's core) is imported by the extension, which the agent starts after
its first heartbeat: a candidate's start, which an upgrade waits for, does not pay for it.
"""

from __future__ import annotations

import asyncio
import logging

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.agent.logs.buffer import DropReason, LogBuffer
from harmony_fleet.agent.logs.journal import JournalReader
from harmony_fleet.agent.logs.lines import Identity
from harmony_fleet.agent.logs.shipper import DROP_REPORT_MSG, LogShipper, ShipConfig
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import Role

log = logging.getLogger(__name__)

__all__ = [
    "DROP_REPORT_MSG",
    "DropReason",
    "Identity",
    "JournalReader",
    "LogBuffer",
    "LogShipper",
    "ShipConfig",
    "enable_log_shipping",
]


def enable_log_shipping(
    agent: Agent, config: ShipConfig, *, logger: logging.Logger | None = None
) -> LogShipper | None:
    """Ship ``agent``'s log (records reaching ``logger``, the root by default) and journals.

    Journals are followed by the main instance only: a candidate started beside it would ship
    every unit line twice. Returns the shipper (its ``counters()`` are what tests look at), or
    None when shipping is disabled.
    """
    if not config.enabled:
        return None
    shipper = LogShipper(
        Identity(
            device_id=agent.config.device_id,
            instance_id=agent.instance_id,
            agent_version=agent.version,
            role=agent.config.role,
            upgrade_id=agent.config.upgrade_id,
        ),
        config,
        ready=lambda nc: _stream_ready(nc, timeout_s=5.0),
    )
    target = logger if logger is not None else logging.getLogger()
    target.addHandler(shipper.handler)

    async def ship_logs(agent: Agent, nc: NatsClient) -> None:
        # The shipper waits for the stream on every (re)connect before it publishes: lines
        # published before it exists are stored nowhere.
        if agent.config.role is Role.MAIN:
            for unit in config.journal_units:
                reader = JournalReader(unit, shipper.buffer, journalctl=config.journalctl)
                agent.spawn(reader.run(), f"journal:{unit}")
        try:
            await shipper.run(nc, stop=agent.stop)
        finally:
            target.removeHandler(shipper.handler)
            log.info("log shipping stopped", extra=shipper.counters())

    agent.add_extension(ship_logs)
    return shipper


async def _stream_ready(nc: NatsClient, *, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the log stream to exist (JetStream may still be recovering
    after a server restart, or the operator not be up yet); False if it did not."""
    from harmony_fleet.adapters.nats.logstream import log_stream  # noqa: PLC0415 (see above)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            await asyncio.wait_for(log_stream(nc.jetstream()), max(0.1, deadline - loop.time()))
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if loop.time() + 0.5 >= deadline:
                log.warning("log stream not available", extra={"error": repr(exc)})
                return False
        await asyncio.sleep(0.5)
