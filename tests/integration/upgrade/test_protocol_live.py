"""ADR-022 over real NATS: the operator's coordinator, an old agent running the upgrade driver
with the fake device, and a real candidate Agent started when its runner is asked to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.faults import Faults
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.agent.upgrade import LoopClock, UpgradeDriver
from harmony_fleet.agent.upgrade.wiring import KVStatusSink, upgrade_extension
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    PingArgs,
    Role,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    Verb,
    device_id,
    new_instance_id,
    new_upgrade_id,
    upgrade_id,
)
from harmony_fleet.contracts.ids import Version
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.core.upgrade.device import CandidateHandle
from harmony_fleet.errors import NotFound
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from harmony_fleet.testing.fake_device import FakeCandidateRunner, FakeDevice
from harmony_fleet.testing.fakes import MemoryStateStore

DEVICE = "edge-up"
OLD, NEW = "1.0.0", "2.0.0"
INTERVAL = 0.25


@dataclass
class Device:
    """One device: the old main agent with its driver, and the candidates it started."""

    options: NatsOptions
    tmp: Path
    candidate_faults: Faults = field(default_factory=Faults)
    fake: FakeDevice | None = None
    runner: CandidateStartingRunner | None = None
    main: Agent | None = None
    driver: UpgradeDriver | None = None
    tasks: list[asyncio.Task[int]] = field(default_factory=list)
    candidates: list[Agent] = field(default_factory=list)
    store: MemoryStateStore = field(default_factory=MemoryStateStore)

    def config(self, role: Role = Role.MAIN, uid: str | None = None) -> AgentConfig:
        return AgentConfig(
            device_id=device_id(DEVICE),
            state_dir=self.tmp / DEVICE,
            nats=self.options,
            heartbeat_interval_s=INTERVAL,
            role=role,
            upgrade_id=upgrade_id(uid) if uid else None,
        )

    def start_main(self, version: str) -> Agent:
        if self.fake is None:
            self.fake = FakeDevice(current=Version(version))
            self.runner = CandidateStartingRunner(self.fake, device=self)
        assert self.runner is not None
        sink = KVStatusSink()
        instance = new_instance_id()
        driver = UpgradeDriver(
            device_id=device_id(DEVICE),
            instance_id=instance,
            running_version=Version(version),
            files=self.fake.files,
            runner=self.runner,
            status_sink=sink,
            state_store=self.store,
            clock=LoopClock(),
        )
        agent = Agent(
            self.config(),
            version=version,
            faults=Faults(),
            instance_id=instance,
            stop_handler=driver,
            extensions=[upgrade_extension(driver, sink)],
        )
        self.main, self.driver = agent, driver
        self.tasks.append(asyncio.ensure_future(agent.run()))
        return agent

    def start_candidate(self, version: str, uid: str) -> Agent:
        agent = Agent(
            self.config(Role.CANDIDATE, uid), version=version, faults=self.candidate_faults
        )
        self.candidates.append(agent)
        self.tasks.append(asyncio.ensure_future(agent.run()))
        return agent

    async def close(self) -> None:
        for a in [self.main, *self.candidates]:
            if a is not None:
                a.request_exit(0)
        if self.driver is not None:
            await self.driver.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class CandidateStartingRunner(FakeCandidateRunner):
    """The fake runner, except that 'start the candidate' starts a real candidate Agent."""

    def __init__(self, fake: FakeDevice, *, device: Device) -> None:
        super().__init__(fake)
        self.owner = device
        self.agent: Agent | None = None

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        handle = await super().start_candidate(marker)
        self.agent = self.owner.start_candidate(marker.target_version, marker.upgrade_id)
        return handle

    async def stop_candidate(self, upgrade_id):  # type: ignore[no-untyped-def]
        if self.agent is not None:
            self.agent.request_exit(0)
        return await super().stop_candidate(upgrade_id)


def make_operator(options: NatsOptions) -> Operator:
    return Operator(
        OperatorConfig(
            nats=options,
            flush_interval_s=0.1,
            presence=PresencePolicy(refresh_s=1.0),
            admit=Admit.ANY,  # the device runs with the admin's credentials, none issued
        )
    )


@contextlib.asynccontextmanager
async def running(operator: Operator) -> AsyncIterator[Operator]:
    task = asyncio.ensure_future(operator.run())
    try:
        await asyncio.wait_for(operator.ready.wait(), 15)
        yield operator
    finally:
        operator.stop.set()
        await asyncio.wait_for(task, 15)


async def write_marker(
    nc: NatsClient, *, cutover_s: float = 20.0, hold_s: float = 20.0, version: str = NEW
) -> UpgradeMarker:
    marker = UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=DEVICE,
        target_version=version,
        artifact_url="http://127.0.0.1:9/agent.pyz",
        sha256="ab" * 32,
        requested_at=time.time(),
        timeouts=UpgradeTimeouts(self_test_s=5, cutover_s=cutover_s, hold_s=hold_s),
    )
    await (await FleetKV(nc).markers()).put(DEVICE, marker)
    return marker


async def status_of(nc: NatsClient) -> UpgradeStatus | None:
    entry = await (await FleetKV(nc).statuses()).get(DEVICE)
    return entry.value if entry is not None else None


async def phase_is(nc: NatsClient, uid: str, *phases: AgentUpgradePhase) -> UpgradeStatus | None:
    s = await status_of(nc)
    return s if s is not None and s.upgrade_id == uid and s.phase in phases else None


@pytest.fixture
async def device(nats_options: NatsOptions, tmp_path: Path) -> AsyncIterator[Device]:
    d = Device(options=nats_options, tmp=tmp_path)
    try:
        yield d
    finally:
        await d.close()


async def test_happy_path_commits_only_after_the_operator_saw_the_candidate(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    old = device.start_main(OLD)
    async with running(make_operator(nats_options)) as op:
        await eventually(lambda: DEVICE in op.registry.devices, what="device registered")
        marker = await write_marker(nc)
        await eventually(
            lambda: phase_is(
                nc, marker.upgrade_id, AgentUpgradePhase.COMMITTED, AgentUpgradePhase.SUCCEEDED
            ),
            timeout=30,
            what="Committed",
        )
        assert device.fake is not None
        names = device.fake.names
        assert names.index("start_candidate") < names.index("swap_current")
        assert device.fake.current == NEW
        assert device.runner is not None
        candidate = device.runner.agent
        assert candidate is not None and candidate.sent >= 1, "no candidate heartbeat, no commit"
        assert op.coordinator.stops_sent >= 1
        # The old agent hands over: it exits by itself after the commit (exit code 0).
        await eventually(device.tasks[0].done, what="old agent exited")
        assert device.tasks[0].result() == 0
        # The service manager now starts `current` (the new version) as main.
        device.start_main(NEW)
        await eventually(
            lambda: (
                (r := op.registry.devices[DEVICE]).current_version == NEW
                and r.upgrade is not None
                and r.upgrade.phase is AgentUpgradePhase.SUCCEEDED
            ),
            timeout=20,
            what="registry shows the new version, upgrade Succeeded",
        )
        assert old.instance_id != device.main.instance_id  # type: ignore[union-attr]
        final = await eventually(
            lambda: phase_is(nc, marker.upgrade_id, AgentUpgradePhase.SUCCEEDED),
            what="the status itself says Succeeded",
        )
        assert final.to_version == NEW


async def test_candidate_that_never_heartbeats_is_reverted_after_the_cutover_timeout(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    device.candidate_faults = Faults(no_heartbeat=True)
    device.start_main(OLD)
    async with running(make_operator(nats_options)) as op:
        await eventually(lambda: DEVICE in op.registry.devices, what="device registered")
        marker = await write_marker(nc, cutover_s=1.5)
        status = await eventually(
            lambda: phase_is(nc, marker.upgrade_id, AgentUpgradePhase.ROLLED_BACK),
            timeout=20,
            what="RolledBack",
        )
        assert device.fake is not None
        assert device.fake.current == OLD
        assert "swap_current" not in device.fake.names
        assert op.coordinator.stops_sent == 0, "never saw the candidate, so never sent a stop"
        assert status.error_code
        assert not device.tasks[0].done(), "the old agent keeps running after a rollback"


async def test_candidate_crash_during_cutover_reverts_at_once_with_its_exit_code(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    device.start_main(OLD)
    async with running(make_operator(nats_options)) as op:
        await eventually(lambda: DEVICE in op.registry.devices, what="device registered")
        # Stop the operator from committing: it never sees a stop-worthy heartbeat in time.
        op.coordinator.tracked.clear()
        op.registry._listeners.clear()
        marker = await write_marker(nc, cutover_s=30, hold_s=30)
        assert device.fake is not None
        await device.fake.wait_for_call("start_candidate")
        device.fake.exit_candidate(3, ("panic: boom",))
        status = await eventually(
            lambda: phase_is(nc, marker.upgrade_id, AgentUpgradePhase.ROLLED_BACK),
            timeout=10,
            what="RolledBack after the candidate crash",
        )
        assert status.candidate_exit_code == 3
        assert "panic: boom" in status.candidate_log_tail
        assert device.fake.current == OLD


async def test_operator_restart_at_cutover_ready_still_commits(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    device.start_main(OLD)
    async with running(make_operator(nats_options)) as op:
        await eventually(lambda: DEVICE in op.registry.devices, what="device registered")
    # The operator is down: the marker is written, the candidate starts, nobody sends a stop.
    marker = await write_marker(nc, cutover_s=30, hold_s=30)
    await eventually(
        lambda: phase_is(
            nc, marker.upgrade_id, AgentUpgradePhase.CUTOVER_READY, AgentUpgradePhase.HOLDING
        ),
        timeout=15,
        what="CutoverReady with the operator down",
    )
    assert device.fake is not None and device.fake.current == OLD
    async with running(make_operator(nats_options)) as op2:
        await eventually(
            lambda: phase_is(
                nc, marker.upgrade_id, AgentUpgradePhase.COMMITTED, AgentUpgradePhase.SUCCEEDED
            ),
            timeout=20,
            what="Committed after the operator came back",
        )
        assert op2.coordinator.stops_sent >= 1
    assert device.fake.current == NEW


async def test_stop_with_a_wrong_upgrade_id_is_refused_and_changes_nothing(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    from harmony_fleet.adapters.nats.commands import CommandsClient

    device.start_main(OLD)
    assert device.main is not None
    await eventually(device.main.connected.is_set, what="agent connected")
    client = CommandsClient(nc)
    reply = await client.upgrade_stop(DEVICE, "u-not-armed")
    assert not reply.ok
    assert reply.code.value in ("not_armed", "wrong_upgrade")
    assert device.fake is not None and device.fake.current == OLD
    ping = await client.send(DEVICE, Verb.PING, PingArgs())
    assert ping.ok


async def test_a_staging_failure_fails_without_touching_current(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    from harmony_fleet.errors import IntegrityError

    device.start_main(OLD)
    assert device.fake is not None
    device.fake.fail["stage"] = IntegrityError("sha256", "ab" * 32, "cd" * 32)
    async with running(make_operator(nats_options)) as op:
        await eventually(lambda: DEVICE in op.registry.devices, what="device registered")
        marker = await write_marker(nc)
        status = await eventually(
            lambda: phase_is(nc, marker.upgrade_id, AgentUpgradePhase.FAILED),
            timeout=15,
            what="Failed",
        )
        assert status.error_code == "integrity"
        assert "start_candidate" not in device.fake.names
        assert device.fake.current == OLD
        await eventually(
            lambda: (
                (u := op.registry.devices[DEVICE].upgrade) is not None
                and u.phase is AgentUpgradePhase.FAILED
            ),
            what="registry reflects Failed",
        )
        # A replay of the same marker never runs again.
        stages = device.fake.names.count("stage")
        await write_marker_value(nc, marker)
        # Markers are taken in order: once a later one is done, the replay was judged too.
        later = await write_marker(nc, version=OLD)
        done = await eventually(
            lambda: phase_is(nc, later.upgrade_id, AgentUpgradePhase.SUCCEEDED),
            timeout=15,
            what="the later no-op marker done",
        )
        assert done.error_code == "already_running"
        assert device.fake.names.count("stage") == stages, "a replayed marker ran again"


async def test_a_failed_self_test_fails_and_the_version_is_refused_next_time(
    device: Device, nats_options: NatsOptions, nc: NatsClient
) -> None:
    from harmony_fleet.core.upgrade.device import ProcessOutcome

    device.start_main(OLD)
    assert device.fake is not None
    device.fake.self_test_outcome = ProcessOutcome(exit_code=1, log_tail=("nats: FAILED",))
    async with running(make_operator(nats_options)) as op:
        await eventually(lambda: DEVICE in op.registry.devices, what="device registered")
        first = await write_marker(nc)
        status = await eventually(
            lambda: phase_is(nc, first.upgrade_id, AgentUpgradePhase.FAILED),
            timeout=15,
            what="Failed",
        )
        assert status.error_code == "self_test_failed"
        again = await write_marker(nc)
        refused = await eventually(
            lambda: phase_is(nc, again.upgrade_id, AgentUpgradePhase.FAILED),
            timeout=15,
            what="second attempt refused",
        )
        assert refused.error_code == "version_failed_before"
        assert device.fake.names.count("self_test") == 1
        assert device.fake.current == OLD


async def write_marker_value(nc: NatsClient, marker: UpgradeMarker) -> None:
    await (await FleetKV(nc).markers()).put(DEVICE, marker)


async def test_nats_stopped_during_the_self_test_never_puts_the_version_on_the_skip_list(
    device: Device, nats_server: EmbeddedNats, nc: NatsClient
) -> None:
    from harmony_fleet.core.upgrade.device import ProcessOutcome

    main = device.start_main(OLD)
    assert device.fake is not None
    # What any artifact's self-test says when its NATS check cannot connect.
    device.fake.self_test_outcome = ProcessOutcome(
        exit_code=1, log_tail=("self-test nats: FAILED: cannot reach NATS",)
    )
    device.fake.hang.add("self_test")
    await eventually(main.connected.is_set, what="agent connected")
    marker = await write_marker(nc)
    await eventually(
        lambda: "self_test" in device.fake.names if device.fake else False,
        timeout=15,
        what="self-test started",
    )
    nats_server.stop()
    await eventually(lambda: main.nc is not None and not main.nc.is_connected, what="outage seen")
    device.fake.release("self_test")
    nats_server.start()
    status = await eventually(
        lambda: phase_is(nc, marker.upgrade_id, AgentUpgradePhase.FAILED),
        timeout=30,
        what="Failed, once NATS is back",
    )
    assert status.error_code == "self_test_inconclusive"
    assert Version(NEW) not in device.store.state.failed_versions


async def test_an_agent_started_before_any_bucket_exists_waits_and_creates_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Agents only open buckets: before the operator (or `fleet server`) made them, the agent
    keeps retrying and creates nothing (so it can never create one with the wrong replicas)."""
    bare = EmbeddedNats(store_dir=tmp_path / "bare", provision=False)
    bare.start()
    options = bare.client_options(reconnect_wait_s=0.2)
    device = Device(options=options, tmp=tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="harmony_fleet.agent"):
            main = device.start_main(OLD)
            await asyncio.wait_for(main.connected.wait(), 15)
            await eventually(
                lambda: any("fleet_upgrade_marker" in str(r.__dict__) for r in caplog.records),
                what="the agent says which bucket it waits for",
            )
        client = await connect(options.with_name("test"))
        try:
            with pytest.raises(NotFound):
                await FleetKV(client).markers()  # the agent created nothing
            async with running(make_operator(options)):  # the operator provisions
                marker = await write_marker(client, version=OLD)
                await eventually(
                    lambda: phase_is(client, marker.upgrade_id, AgentUpgradePhase.SUCCEEDED),
                    timeout=15,
                    what="the agent, once the buckets exist, takes the marker up",
                )
        finally:
            await client.close()
    finally:
        await device.close()
        bare.stop()


async def test_a_superseded_upgrade_ends_in_the_status_history_before_the_newer_one(
    device: Device, nc: NatsClient
) -> None:
    main = device.start_main(OLD)
    assert device.fake is not None
    device.fake.hang.add("stage")
    await asyncio.wait_for(main.connected.wait(), 15)
    first = await write_marker(nc)
    await eventually(lambda: phase_is(nc, first.upgrade_id, AgentUpgradePhase.STAGING))
    second = await write_marker(nc, version="3.0.0")
    await eventually(lambda: phase_is(nc, second.upgrade_id, AgentUpgradePhase.STAGING))
    statuses = await FleetKV(nc).statuses()
    history = [statuses.codec.decode(e.value) for e in await statuses.kv.history(DEVICE) if e.value]
    phases = [(s.upgrade_id, s.phase) for s in history]
    ended = phases.index((first.upgrade_id, AgentUpgradePhase.SUPERSEDED))
    assert ended < phases.index((second.upgrade_id, AgentUpgradePhase.STAGING)), phases
    assert history[ended].superseded_by == second.upgrade_id
    assert history[ended].error_code == "superseded"
