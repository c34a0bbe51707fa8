"""ProcessRunner.self_test: the real staged artifact with ``--self-test``, against real NATS."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from proc_support import NEW, SELF_TEST_FAILS, SELF_TEST_HANGS, Built, install, live_pids_with
from proc_support import marker as make_marker

from conftest import ProcDevice
from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts.upgrade import SELF_TEST_UNAVAILABLE_EXIT
from harmony_fleet.errors import NotFound

URL = "http://127.0.0.1:9/unused"


async def test_self_test_passes_and_reports_each_check(
    device: ProcDevice, layout: AgentLayout, artifact: Callable[[str], Built]
) -> None:
    install(layout, artifact(NEW))

    outcome = await device.runner.self_test(make_marker(artifact(NEW), URL), timeout_s=60)

    assert outcome.ok, outcome
    assert outcome.exit_code == 0
    assert any(line.startswith("self-test nats: ok") for line in outcome.log_tail)
    assert any(line.startswith("self-test imports: ok") for line in outcome.log_tail)


async def test_failing_self_test_gives_exit_code_and_reason(
    device: ProcDevice, layout: AgentLayout, artifact: Callable[[str], Built]
) -> None:
    install(layout, artifact(SELF_TEST_FAILS))

    outcome = await device.runner.self_test(
        make_marker(artifact(SELF_TEST_FAILS), URL), timeout_s=60
    )

    assert not outcome.ok
    assert outcome.exit_code == 1
    assert not outcome.timed_out
    assert any("FAILED" in line and "self-test-fail" in line for line in outcome.log_tail)
    assert len(outcome.log_tail) <= 20


async def test_hanging_self_test_is_killed_with_its_process_group(
    device: ProcDevice, layout: AgentLayout, artifact: Callable[[str], Built]
) -> None:
    hangs = artifact(SELF_TEST_HANGS)
    install(layout, hangs)
    agent = str(layout.version_dir(SELF_TEST_HANGS) / "agent")
    started = time.monotonic()

    outcome = await device.runner.self_test(make_marker(hangs, URL), timeout_s=3)

    assert outcome.timed_out
    assert outcome.exit_code is None
    assert not outcome.ok
    assert outcome.log_tail[-1].endswith("self-test killed after 3 s")
    assert time.monotonic() - started < 3 + 10, "killed shortly after the timeout"
    assert live_pids_with(agent) == [], "nothing of the self-test may outlive the timeout"


async def test_self_test_of_a_version_that_is_not_staged_is_an_error(
    device: ProcDevice, artifact: Callable[[str], Built]
) -> None:
    with pytest.raises(NotFound):
        await device.runner.self_test(make_marker(artifact(NEW), URL), timeout_s=5)


async def test_a_self_test_without_nats_says_so_with_its_own_exit_code(
    device: ProcDevice,
    layout: AgentLayout,
    artifact: Callable[[str], Built],
    nats_server: EmbeddedNats,
) -> None:
    install(layout, artifact(NEW))
    nats_server.stop()  # an outage during the self-test: the version is not to blame

    outcome = await device.runner.self_test(make_marker(artifact(NEW), URL), timeout_s=60)

    assert outcome.exit_code == SELF_TEST_UNAVAILABLE_EXIT, outcome
    assert any(line.startswith("self-test nats: FAILED") for line in outcome.log_tail)
    assert any(line.startswith("self-test imports: ok") for line in outcome.log_tail)
