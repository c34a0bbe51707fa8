"""After the commit, under a real systemd (issue 6): the unit itself returns the device.

A version that passes its self-test and heartbeats as a candidate is committed; then, as the
service's main instance, it crashes a few seconds into every run (``CRASHY``) or stops
heartbeating while it keeps running (``HUSHED``). The operator is gone by then: what brings the
device back is systemd's machinery around the launcher ``fleet agent install`` pinned
(``ExecStopPost=`` counting failed runs, ``WatchdogSec=`` catching the silence), never the
broken version's code. The previous version's agent then says ``RolledBack`` ``post_commit``,
with the new version's exit code and last journal lines.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.contracts import AgentUpgradePhase, UpgradeStatus
from tests.helpers import eventually, run_fleet
from tests.systemd.conftest import CRASHY, HUSHED, MAIN_FAULT_AFTER_S, NEW, OLD
from tests.systemd.nspawn import Machine
from tests.systemd.support import (
    PREFIX,
    SERVICE,
    Beats,
    FleetNats,
    Served,
    agent_processes,
    candidate_units,
    current,
    heartbeats,
    install,
    operator,
    phase_is,
    request_upgrade,
    versions,
)

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(900)]

P = AgentUpgradePhase
WINDOW_S = 240.0


async def device_verdict_after_commit(
    machine: Machine,
    served: Served,
    nats: FleetNats,
    nc: NatsClient,
    beats: Beats,
    device: str,
    version: str,
) -> tuple[UpgradeStatus, float]:
    """Upgrade to ``version`` until the old agent has committed, stop the operator, and wait
    for the device's own verdict and a main of ``OLD`` beating after it; the verdict and how
    long after ``Committed`` it came."""
    install(machine, device, nats, served, OLD)
    async with operator(nats):
        await eventually(lambda: beats.of(version=OLD, role="main"), timeout=60, what="old main")
        marker = await request_upgrade(
            nc, device, served, version, cutover_s=60, hold_s=60, watch_s=WINDOW_S
        )
        committed = await eventually(
            lambda: phase_is(nc, device, marker.upgrade_id, P.COMMITTED),
            timeout=120,
            what="Committed (the new main on probation)",
        )
    assert committed.watch_until is not None
    assert current(machine) == f"versions/{version}"
    t_commit = time.monotonic()
    status = await eventually(
        lambda: phase_is(nc, device, marker.upgrade_id, P.ROLLED_BACK, P.SUCCEEDED),
        timeout=WINDOW_S,
        what="the device's own verdict",
    )
    elapsed = time.monotonic() - t_commit
    back = time.monotonic()
    await eventually(
        lambda: beats.of(version=OLD, role="main", after=back), timeout=60, what="old main"
    )
    return status, elapsed


def journal(machine: Machine) -> str:
    return machine.run("journalctl", "--no-pager", "-o", "cat", "-u", f"{SERVICE}.service").stdout


async def test_a_version_that_crashes_after_the_commit_is_rolled_back_by_the_unit(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    async with heartbeats(host_nc, device) as beats:
        status, elapsed = await device_verdict_after_commit(
            machine, served, fleet_nats, host_nc, beats, device, CRASHY
        )
    print(f"\ncrash loop after the commit: back on {OLD} {elapsed:.1f} s after Committed")
    assert status.phase is P.ROLLED_BACK, status
    assert status.error_code == "post_commit", status
    assert "crash_loop" in status.error_detail and "3 times" in status.error_detail, status
    assert status.candidate_exit_code == 3, "the new version's own exit code"
    assert any("build fault: crashing" in line for line in status.candidate_log_tail), status
    assert elapsed < WINDOW_S, "inside the window"
    assert len(beats.of(version=CRASHY, role="main")) >= 1, "it did run as the main, and beat"
    assert current(machine) == f"versions/{OLD}"
    assert sorted(versions(machine)) == [OLD, CRASHY], "kept for a person to look at"
    assert candidate_units(machine) == []
    procs = agent_processes(machine, device)
    assert len(procs) == 1, procs
    words = journal(machine)
    assert f"watch-hook: rolled back {CRASHY} -> {OLD} (crash_loop)" in words
    # The judge was the launcher the install pinned, not the version on trial.
    assert machine.sh(f"test -x {PREFIX}/launcher/agent", check=False).returncode == 0


async def test_a_version_that_stops_heartbeating_after_the_commit_is_caught_by_the_watchdog(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    async with heartbeats(host_nc, device) as beats:
        status, elapsed = await device_verdict_after_commit(
            machine, served, fleet_nats, host_nc, beats, device, HUSHED
        )
    watchdog_s = machine.run(
        "systemctl", "show", "-p", "WatchdogUSec", "--value", f"{SERVICE}.service"
    ).stdout.strip()
    print(
        f"\nsilent after the commit: back on {OLD} {elapsed:.1f} s after Committed "
        f"(WatchdogSec {watchdog_s}, silent from {MAIN_FAULT_AFTER_S} s into its run)"
    )
    assert status.phase is P.ROLLED_BACK, status
    assert status.error_code == "post_commit", status
    assert "no_heartbeat" in status.error_detail and "watchdog" in status.error_detail, status
    assert any("heartbeats stop here" in line for line in status.candidate_log_tail), status
    assert elapsed < WINDOW_S
    assert current(machine) == f"versions/{OLD}"
    assert len(agent_processes(machine, device)) == 1
    assert f"watch-hook: rolled back {HUSHED} -> {OLD} (no_heartbeat)" in journal(machine)


async def test_fleet_rollback_returns_to_the_kept_version_under_systemd(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    """The manual rollback is an upgrade to the kept version (``source: installed``) through the
    same transient candidate unit and the same commit discipline."""
    install(machine, device, fleet_nats, served, OLD)
    async with heartbeats(host_nc, device) as beats, operator(fleet_nats):
        await eventually(lambda: beats.of(version=OLD, role="main"), timeout=60, what="old main")
        up = await request_upgrade(host_nc, device, served, NEW, cutover_s=60, hold_s=60)
        await eventually(
            lambda: phase_is(host_nc, device, up.upgrade_id, P.SUCCEEDED),
            timeout=120,
            what=f"Succeeded on {NEW}",
        )
        started = time.monotonic()
        done = await asyncio.to_thread(
            run_fleet,
            *["rollback", device, *fleet_nats.cli_args(), "--watch-window", "1"],
            *["--wait", "150", "--json"],
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        await eventually(
            lambda: beats.of(version=OLD, role="main", after=started), what="old main again"
        )
    final = result["status"]
    assert result["outcome"] == "ok", result
    assert (final["from_version"], final["to_version"]) == (NEW, OLD)
    candidates = beats.of(version=OLD, role="candidate", after=started)
    assert candidates, "a candidate of the kept version ran and was seen before the switch"
    assert current(machine) == f"versions/{OLD}"
    assert sorted(versions(machine)) == [OLD, NEW], "both kept: each is the other's previous"
    assert candidate_units(machine) == []
    assert len(agent_processes(machine, device)) == 1
