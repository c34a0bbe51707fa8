"""The upgrade fault matrix with real processes: operator, supervised agents from real
artifacts, real NATS, real symlinks, on signed releases (every device pins the repository's
root; artifacts come from the ``fleet_artifacts`` object store, checked against signed metadata).

Every test ends with the invariants of ADR-022: exactly one agent process left for the device,
``current`` on the previous or a committed version, a terminal status that tells the truth, and,
on the successful paths, no lost heartbeat (no device-level gap of two intervals or more).
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from harmony_fleet.adapters.nats.commands import CommandsClient
from harmony_fleet.adapters.nats.fleet_kv import ARTIFACTS
from harmony_fleet.contracts import ErrorCode, ReplyCode, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.support import DEV, QUICK, P, invariants, no_lost_heartbeat, reaches, started
from tests.helpers import eventually


async def test_happy_path(fleet: LocalFleet) -> None:
    await started(fleet)
    fleet.monitor.reset()
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    await reaches(fleet, marker, P.SUCCEEDED)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)
    no_lost_heartbeat(fleet)
    assert fleet.devices[DEV].layout.has_version("1.0.0"), "the previous version stays on disk"


def _forged(original: bytes, how: str) -> bytes:
    if how == "replaced":  # same length, one byte flipped
        return original[:-1] + bytes([original[-1] ^ 0xFF])
    if how == "truncated":
        return original[: len(original) // 2]
    return b""


@pytest.mark.parametrize("how", ["replaced", "truncated", "zero-byte"])
async def test_artifact_with_other_bytes_in_the_store_fails_and_changes_nothing(
    fleet: LocalFleet, how: str
) -> None:
    """The marker's URL and hash are hints; what is fetched is checked against the signed
    target's length and sha256 (what a compromised store or mirror would serve is refused)."""
    await started(fleet)
    release = await fleet.publish("2.0.0")
    original = (fleet.artifact_dir / fleet.artifacts["2.0.0"].file).read_bytes()
    assert fleet.nc is not None
    store = await fleet.nc.jetstream().object_store(ARTIFACTS.name)
    await store.put(release.object_name, _forged(original, how))
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    status = await reaches(fleet, marker, P.FAILED)
    assert status.error_code == ErrorCode.UNTRUSTED.value, status
    assert status.error_detail.startswith("hash mismatch"), status.error_detail
    await invariants(fleet, marker, current="1.0.0", phase=P.FAILED)
    assert not fleet.devices[DEV].layout.has_version("2.0.0")


async def test_artifact_missing_from_the_store_fails(fleet: LocalFleet) -> None:
    await started(fleet)
    release = await fleet.publish("2.0.0")
    assert fleet.nc is not None
    store = await fleet.nc.jetstream().object_store(ARTIFACTS.name)
    await store.delete(release.object_name)
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    status = await reaches(fleet, marker, P.FAILED)
    assert status.error_code == ErrorCode.UNTRUSTED.value, status
    assert status.error_detail.startswith("artifact missing"), status.error_detail
    await invariants(fleet, marker, current="1.0.0", phase=P.FAILED)
    assert not fleet.devices[DEV].layout.has_version("2.0.0")


async def test_self_test_failure(fleet: LocalFleet) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(DEV, "2.1.0", timeouts=QUICK)
    status = await reaches(fleet, marker, P.FAILED)
    assert status.error_code == "self_test_failed"
    assert (
        any("self-test-fail" in line for line in status.candidate_log_tail) or status.error_detail
    )
    await invariants(fleet, marker, current="1.0.0", phase=P.FAILED)


async def test_self_test_that_hangs_times_out(fleet: LocalFleet) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(
        DEV, "2.2.0", timeouts=UpgradeTimeouts(self_test_s=4, cutover_s=8, hold_s=30)
    )
    status = await reaches(fleet, marker, P.FAILED)
    assert status.error_code == "self_test_timeout"
    await invariants(fleet, marker, current="1.0.0", phase=P.FAILED)


async def test_candidate_that_never_heartbeats_rolls_back(fleet: LocalFleet) -> None:
    await started(fleet)
    fleet.monitor.reset()
    marker = await fleet.request_upgrade(DEV, "2.3.0", timeouts=QUICK)
    status = await reaches(fleet, marker, P.ROLLED_BACK)
    assert status.error_code == "cutover_timeout"
    await invariants(fleet, marker, current="1.0.0", phase=P.ROLLED_BACK)
    no_lost_heartbeat(fleet)


async def test_candidate_that_crashes_during_cutover_rolls_back_with_its_exit_code(
    fleet: LocalFleet,
) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(DEV, "2.4.0", timeouts=QUICK)
    status = await reaches(fleet, marker, P.ROLLED_BACK)
    assert status.error_code == "candidate_exited"
    assert status.candidate_exit_code == 3
    assert status.candidate_log_tail, "the candidate's last lines are kept"
    await invariants(fleet, marker, current="1.0.0", phase=P.ROLLED_BACK)


async def test_sigkill_of_the_old_agent_while_verifying(fleet: LocalFleet) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(
        DEV, "2.2.0", timeouts=UpgradeTimeouts(self_test_s=6, cutover_s=8, hold_s=30)
    )
    await reaches(fleet, marker, P.VERIFYING)
    pid = fleet.devices[DEV].supervisor.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    status = await reaches(fleet, marker, P.FAILED, timeout=120)
    assert status.error_code in ("self_test_timeout", "too_many_attempts")
    await invariants(fleet, marker, current="1.0.0", phase=P.FAILED)


async def test_sigkill_of_the_old_agent_at_cutover_ready(fleet: LocalFleet) -> None:
    await started(fleet)
    await fleet.stop_operator(kill=True)  # nobody commits: the device waits in cutover
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    await reaches(fleet, marker, P.CUTOVER_READY, P.HOLDING)
    pid = fleet.devices[DEV].supervisor.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    status = await reaches(fleet, marker, P.ROLLED_BACK)
    assert status.error_code == "agent_restarted"
    await fleet.start_operator()
    await invariants(fleet, marker, current="1.0.0", phase=P.ROLLED_BACK)


async def test_operator_killed_before_cutover_then_restarted_commits(fleet: LocalFleet) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    await reaches(fleet, marker, P.STAGING, P.VERIFYING)
    await fleet.stop_operator(kill=True)
    await reaches(fleet, marker, P.CUTOVER_READY, P.HOLDING)
    assert fleet.devices[DEV].layout.current_version() == "1.0.0", "no commit without operator"
    await fleet.start_operator()
    await reaches(fleet, marker, P.SUCCEEDED)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)


async def test_nats_restarted_at_cutover_ready(fleet: LocalFleet) -> None:
    await started(fleet)
    await fleet.stop_operator(kill=True)
    marker = await fleet.request_upgrade(
        DEV, "2.0.0", timeouts=UpgradeTimeouts(self_test_s=30, cutover_s=60, hold_s=60, watch_s=1)
    )
    await reaches(fleet, marker, P.CUTOVER_READY, P.HOLDING)
    assert fleet.server is not None
    await asyncio.to_thread(fleet.server.stop)
    await asyncio.to_thread(fleet.server.start)
    await fleet.start_operator()
    await reaches(fleet, marker, P.SUCCEEDED, timeout=120)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)


async def test_upgrade_stop_with_a_wrong_upgrade_id_is_refused(fleet: LocalFleet) -> None:
    await started(fleet)
    await fleet.stop_operator(kill=True)
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    await reaches(fleet, marker, P.CUTOVER_READY, P.HOLDING)
    assert fleet.nc is not None
    reply = await CommandsClient(fleet.nc).upgrade_stop(DEV, "u-someone-else")
    assert reply.code is ReplyCode.WRONG_UPGRADE
    assert fleet.devices[DEV].layout.current_version() == "1.0.0"
    await fleet.start_operator()
    await reaches(fleet, marker, P.SUCCEEDED)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)


async def test_markers_replayed_after_success_and_after_rollback_never_run_again(
    fleet: LocalFleet,
) -> None:
    from harmony_fleet.adapters.nats.fleet_kv import write_marker

    assert fleet.nc is not None
    await started(fleet)
    good = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    await reaches(fleet, good, P.SUCCEEDED)
    await eventually(lambda: len(fleet.agent_processes(DEV)) == 1, timeout=30, what="one agent")
    bad = await fleet.request_upgrade(DEV, "2.3.0", timeouts=QUICK)
    await reaches(fleet, bad, P.ROLLED_BACK)
    for replay in (good, bad):
        await write_marker(fleet.nc, replay)
        # A later no-op marker proves the replay was judged (markers are taken in order).
        noop = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
        status = await reaches(fleet, noop, P.SUCCEEDED)
        assert status.error_code == "already_running"
    assert fleet.devices[DEV].layout.current_version() == "2.0.0"
    await eventually(lambda: len(fleet.agent_processes(DEV)) == 1, timeout=30, what="one agent")
