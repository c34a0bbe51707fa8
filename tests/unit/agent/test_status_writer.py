"""The agent's status writer: a value the server refuses for good is given up, not retried for
ever; a newer status still gets its own attempt."""

from __future__ import annotations

import asyncio

from harmony_fleet.agent.upgrade.status_writer import StatusWriter
from harmony_fleet.contracts import AgentUpgradePhase, UpgradeStatus
from harmony_fleet.errors import Refused
from harmony_fleet.testing.clock import FakeClock
from harmony_fleet.testing.fakes import MemoryStatusSink


def status(phase: AgentUpgradePhase) -> UpgradeStatus:
    return UpgradeStatus(
        upgrade_id="u1",
        device_id="dev-1",
        phase=phase,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="a" * 32,
        started_at=1.0,
        updated_at=2.0,
    )


async def test_a_refused_status_is_given_up_and_the_next_one_written() -> None:
    sink = MemoryStatusSink()
    writer = StatusWriter(sink, FakeClock())
    sink.fail_next(Refused("message size exceeds maximum allowed", code="nats_refused"))
    writer.publish(status(AgentUpgradePhase.STAGING))
    await asyncio.wait_for(writer.flush(), 5)
    assert sink.attempts == 1 and sink.written == []
    writer.publish(status(AgentUpgradePhase.FAILED))
    await asyncio.wait_for(writer.flush(), 5)
    assert [s.phase for s in sink.written] == [AgentUpgradePhase.FAILED]


async def test_an_error_outside_the_tree_does_not_hang_the_writer() -> None:
    sink = MemoryStatusSink()
    writer = StatusWriter(sink, FakeClock())
    sink.fail_next(RuntimeError("a bug in a sink"))
    writer.publish(status(AgentUpgradePhase.STAGING))
    await asyncio.wait_for(writer.flush(), 5)  # before the fix: the task died, flush hung
    writer.publish(status(AgentUpgradePhase.FAILED))
    await asyncio.wait_for(writer.flush(), 5)
    assert [s.phase for s in sink.written] == [AgentUpgradePhase.FAILED]
    await writer.close()
