"""The agent process: connect (forever), heartbeat, answer commands, shut down cleanly.

The agent must keep beating through everything short of its own death: it starts fine while NATS
is down, survives NATS restarts (nats-py reconnects forever with our options), and never blocks on
a slow server. A heartbeat that cannot be sent because the connection is down is counted and
skipped, not buffered: a burst of stale heartbeats after a reconnect would only confuse presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harmony_fleet._tasks import BackgroundTasks, wait_event
from harmony_fleet._version import BUILD_FAULTS, __version__
from harmony_fleet.adapters.device.notes import mark_alive
from harmony_fleet.adapters.nats.connection import (
    NatsClient,
    NatsOptions,
    barrier,
    connect_forever,
)
from harmony_fleet.adapters.systemd.notify import WatchdogNotifier
from harmony_fleet.agent.commands import CommandHandler, LeaseReader, StopHandler
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.facts import FreeDisk, device_facts
from harmony_fleet.agent.faults import Faults, parse_faults
from harmony_fleet.contracts import (
    Heartbeat,
    InstanceId,
    Role,
    Version,
    encode,
    new_instance_id,
    subjects,
)
from harmony_fleet.contracts.rollout import LABEL_FREE_DISK
from harmony_fleet.logging_setup import FieldsAdapter

log = logging.getLogger(__name__)

#: The version of the code in this process (what its heartbeats report).
RUNNING_VERSION = Version(__version__)

#: Exit code of a crash injected by a build fault (see ``agent.faults``).
FAULT_EXIT_CODE = 3

Extension = Callable[["Agent", NatsClient], Awaitable[None]]


class Agent:
    """One agent instance (one process start: one ``instance_id``)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        version: Version = RUNNING_VERSION,
        faults: Faults | None = None,
        instance_id: InstanceId | None = None,
        stop_handler: StopHandler | None = None,
        liveness_file: Path | None = None,
        watchdog: WatchdogNotifier | None = None,
        extensions: list[Extension] | None = None,
    ) -> None:
        self.config = config
        self.version = version
        self.labels = {**device_facts(config.executor), **config.labels}
        """The heartbeat's labels: this device's facts (:mod:`.facts`), then ``--label``."""
        self.free_disk: FreeDisk | None = None
        """Free disk of the install prefix, coarse (:class:`~.facts.FreeDisk`), carried by
        every heartbeat and read again at most once a minute; None when the agent cannot
        upgrade itself or ``--label`` sets it."""
        if config.install_prefix is not None and LABEL_FREE_DISK not in config.labels:
            self.free_disk = FreeDisk.of(config.install_prefix)
        self.faults = faults if faults is not None else parse_faults(BUILD_FAULTS)
        self.instance_id = instance_id or new_instance_id()
        self.started = time.monotonic()
        self.seq = 0
        self.sent = 0
        self.skipped = 0
        self.exit_code = 0
        self.nc: NatsClient | None = None
        self.stop = asyncio.Event()
        self.connected = asyncio.Event()
        self.first_beat = asyncio.Event()
        """Set once the heartbeat loop made its first attempt: extensions start after it."""
        self.commands = CommandHandler(
            instance_id=self.instance_id,
            agent_version=version,
            role=config.role,
            stop_handler=stop_handler,
            subject=subjects.command(config.device_id),
        )
        self.liveness_file = liveness_file
        """Overwritten on every heartbeat tick by a main instance that may upgrade itself: the
        launcher's post-commit watch sees it change (``adapters.device.notes.mark_alive``)."""
        self.watchdog = watchdog
        """systemd's watchdog, pinged at the same moments (``adapters.systemd.notify``): under
        the installed unit, a main whose heartbeat loop stops is killed and, inside a
        post-commit watch, rolled back."""
        self._extensions = extensions or []
        self._background = BackgroundTasks()
        self._rng = random.Random()
        self.log = FieldsAdapter(
            log,
            {
                "device_id": config.device_id,
                "instance_id": self.instance_id,
                "agent_version": version,
                "role": config.role.value,
            },
        )

    def add_extension(self, extension: Extension) -> None:
        """Run ``extension(agent, nc)`` as a task once connected (before :meth:`run`)."""
        self._extensions.append(extension)

    # -- heartbeats -------------------------------------------------------------------------
    def heartbeat(self) -> Heartbeat:
        """The next heartbeat (advances the sequence number)."""
        self.seq += 1
        if self.free_disk is not None:
            free = self.free_disk.value()
            if free is not None and self.labels.get(LABEL_FREE_DISK) != free:
                self.labels = {**self.labels, LABEL_FREE_DISK: free}
        return Heartbeat(
            device_id=self.config.device_id,
            instance_id=self.instance_id,
            agent_version=self.version,
            role=self.config.role,
            seq=self.seq,
            sent_at=time.time(),
            uptime_s=round(time.monotonic() - self.started, 3),
            interval_s=self.config.heartbeat_interval_s,
            upgrade_id=self.config.upgrade_id,
            labels=self.labels,
        )

    def next_interval(self) -> float:
        j = self.config.jitter
        return self.config.heartbeat_interval_s * self._rng.uniform(1 - j, 1 + j)

    async def publish_heartbeat(self) -> bool:
        nc = self.nc
        if nc is None or not nc.is_connected:
            self.skipped += 1
            return False
        try:
            await nc.publish(subjects.heartbeat(self.config.device_id), encode(self.heartbeat()))
        except Exception as exc:  # nats-py raises several unrelated types while reconnecting
            self.skipped += 1
            self.log.debug("heartbeat not sent", extra={"error": repr(exc)})
            return False
        self.sent += 1
        return True

    def touch_alive(self) -> None:
        """Tell the launcher this instance's heartbeat loop is alive (``liveness_file``, and
        systemd's ``watchdog`` when the unit asked for one)."""
        if self.liveness_file is not None:
            with contextlib.suppress(OSError):
                mark_alive(self.liveness_file)
        if self.watchdog is not None:
            self.watchdog.ping()

    async def _alive_until_connected(self) -> None:
        # While NATS is unreachable no heartbeat loop runs yet; a NATS outage must never look
        # like a silent agent to the post-commit watch, so the process itself says it is alive.
        while not self.connected.is_set() and not self.stop.is_set():
            self.touch_alive()
            await wait_event(self.connected, self.config.heartbeat_interval_s)

    def _heartbeat_fault(self) -> bool:
        limit = self.faults.stop_heartbeat_as_main_after_s
        if limit is None or self.config.role is not Role.MAIN:
            return False
        if time.monotonic() - self.started < limit:
            return False
        self.log.error("build fault: heartbeats stop here", extra={"after_s": limit})
        return True

    async def _heartbeat_loop(self) -> None:
        try:
            await self._beat()
        finally:
            self.first_beat.set()  # whatever ended the loop, extensions need not wait for it

    async def _beat(self) -> None:
        if self.faults.no_heartbeat:
            self.log.warning("build fault: this agent never heartbeats")
            return
        # Deadline-based: each beat is scheduled from the previous *deadline*, not from when the
        # publish finished, so slow publishes or a busy loop never accumulate into a longer gap.
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not self.stop.is_set():
            if self._heartbeat_fault():
                return
            sent = await self.publish_heartbeat()
            self.first_beat.set()
            if sent or self.nc is None or not self.nc.is_connected:
                self.touch_alive()  # a beat went out, or there was no connection to send it on
            deadline = max(deadline + self.next_interval(), loop.time())
            await wait_event(self.stop, max(0.0, deadline - loop.time()))

    # -- commands ---------------------------------------------------------------------------
    async def _on_command(self, msg: Any) -> None:
        if self.commands.delivered_by_jetstream(msg.subject, msg.reply, msg.headers):
            return
        reply = await self.commands.handle(msg.data)
        if reply is None or not msg.reply:
            return
        with contextlib.suppress(Exception):
            await msg.respond(encode(reply))

    # -- faults -----------------------------------------------------------------------------
    async def _crash_after(self, seconds: float) -> None:
        if await wait_event(self.stop, seconds):
            return
        self.log.error("build fault: crashing", extra={"after_s": seconds})
        self.exit_code = FAULT_EXIT_CODE
        self.stop.set()

    # -- lifecycle --------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run a background task that lives as long as the agent."""
        return self._background.spawn(coro, name)

    def request_exit(self, code: int = 0) -> None:
        """Ask the agent to shut down with ``code`` (signals, handover after commit)."""
        self.exit_code = code
        self.stop.set()

    async def run(self) -> int:
        """Run until :meth:`request_exit` (or a signal) and return the exit code."""
        self.log.info("agent starting", extra={"state_dir": str(self.config.state_dir)})
        if self.faults.crash_after_s is not None:
            self.spawn(self._crash_after(self.faults.crash_after_s), "fault-crash")
        if self.faults.crash_as_main_after_s is not None and self.config.role is Role.MAIN:
            self.spawn(self._crash_after(self.faults.crash_as_main_after_s), "fault-crash-main")
        if self.liveness_file is not None or self.watchdog is not None:
            self.spawn(self._alive_until_connected(), "liveness")
        nc = await connect_forever(self._nats_options(), log=log, stop=self.stop)
        if nc is None:
            return await self._shutdown()
        self.nc = nc
        self.commands.lease_epoch = LeaseReader(nc)  # a deposed operator's stop is refused
        await nc.subscribe(subjects.command(self.config.device_id), cb=self._on_command)
        with contextlib.suppress(Exception):
            await barrier(nc)  # commands reach us from the moment we say we are connected
        self.connected.set()
        self.log.info("connected", extra={"servers": list(self.config.nats.servers)})
        self.spawn(self._heartbeat_loop(), "heartbeat")
        # The first heartbeat goes out before the extensions start (upgrades, log shipping):
        # what they import and open would only delay it (docs/agent.md, "Footprint").
        await wait_event(self.first_beat, self.config.heartbeat_interval_s)
        for extension in self._extensions:
            self.spawn(extension(self, nc), getattr(extension, "__name__", "extension"))
        await self.stop.wait()
        return await self._shutdown()

    def _nats_options(self) -> NatsOptions:
        """The configured options, named after this instance, without echo: the main listens on
        its device's heartbeat subject for its candidates' beats (``agent.upgrade.wiring``), and
        its own would come back to it every interval, to be read, decoded and dropped."""
        options = self.config.nats.with_name(
            f"agent:{self.config.device_id}:{self.config.role.value}"
        )
        return dataclasses.replace(options, extra={**options.extra, "no_echo": True})

    async def _shutdown(self) -> int:
        await self._background.cancel_all()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 2.0)
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.log.info(
            "agent stopped",
            extra={"exit_code": self.exit_code, "sent": self.sent, "skipped": self.skipped},
        )
        return self.exit_code
