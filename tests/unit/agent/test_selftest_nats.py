"""The self-test's NATS check waits out a control plane that answers a moment late (a JetStream
leader election), and fails at once on what waiting cannot fix."""

from __future__ import annotations

from pathlib import Path

from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.selftest import check_nats
from harmony_fleet.contracts import DeviceId
from harmony_fleet.errors import ConfigError, Unavailable

CONFIG = AgentConfig(device_id=DeviceId("edge-1"), state_dir=Path("/nonexistent"))


class Probe:
    """Fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "connected, JetStream streams=9"


async def test_a_control_plane_that_answers_a_moment_late_passes() -> None:
    probe = Probe(2, Unavailable("nats: no responders available for request"))
    result = await check_nats(CONFIG, 5.0, probe=probe, retry_s=0.01)
    assert result.ok, result.detail
    assert probe.calls == 3


async def test_credentials_refused_fail_at_once() -> None:
    probe = Probe(100, ConfigError("authorization violation: the credentials were refused"))
    result = await check_nats(CONFIG, 30.0, probe=probe, retry_s=0.01)
    assert not result.ok and "refused" in result.detail
    assert probe.calls == 1


async def test_a_control_plane_away_for_the_whole_timeout_fails_naming_the_last_error() -> None:
    probe = Probe(10**6, RuntimeError("JetStream not available"))
    result = await check_nats(CONFIG, 0.2, probe=probe, retry_s=0.01)
    assert not result.ok
    assert "within 0.2 s" in result.detail and "JetStream not available" in result.detail
    assert probe.calls > 1


async def test_a_request_that_times_out_by_itself_is_tried_again() -> None:
    """nats-py's request timeout is a TimeoutError too: only the check's own deadline ends it
    (a JetStream API request unanswered during a meta-leader election)."""
    probe = Probe(2, TimeoutError("nats: timeout"))
    result = await check_nats(CONFIG, 5.0, probe=probe, retry_s=0.01)
    assert result.ok, result.detail
    assert probe.calls == 3
