"""ADR-022 with the ``SystemdRunner`` for real: the agent inside upgrades itself.

The agent runs as the container's ``harmony-fleet-agent.service``, installed by
``fleet agent install``; the operator runs here, in the test process, against the host's NATS;
the marker is written here. What is asserted is what a person would check on the device:
where ``current`` points, which units exist, which processes run, and what the status says.
"""

from __future__ import annotations

import time

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.contracts import AgentUpgradePhase
from tests.helpers import eventually
from tests.systemd.conftest import NEW, OLD, SILENT
from tests.systemd.nspawn import Machine
from tests.systemd.support import (
    INTERVAL,
    SERVICE,
    FleetNats,
    Served,
    agent_processes,
    assert_sandboxed,
    candidate_units,
    current,
    heartbeats,
    install,
    operator,
    phase_is,
    request_upgrade,
    status_of,
    versions,
)

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(900)]

TERMINAL = (AgentUpgradePhase.SUCCEEDED, AgentUpgradePhase.ROLLED_BACK, AgentUpgradePhase.FAILED)


async def test_upgrade_succeeds_and_the_main_unit_runs_the_new_version(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    install(machine, device, fleet_nats, served, OLD)
    async with heartbeats(host_nc, device) as beats, operator(fleet_nats) as op:
        old = await eventually(
            lambda: beats.of(version=OLD, role="main"), timeout=60, what="the old main beating"
        )
        started = time.monotonic()
        marker = await request_upgrade(host_nc, device, served, NEW, cutover_s=60, hold_s=60)
        await eventually(
            lambda: phase_is(host_nc, device, marker.upgrade_id, *TERMINAL),
            timeout=120,
            what="a terminal status",
        )
        ended = time.monotonic()
        status = await status_of(host_nc, device)
        assert status is not None and status.phase is AgentUpgradePhase.SUCCEEDED, status
        record = await eventually(
            lambda: (
                (r := op.registry.devices.get(device)) is not None
                and r.upgrade is not None
                and r.upgrade.phase is AgentUpgradePhase.SUCCEEDED
                and r
            ),
            timeout=30,
            what="the operator's verdict",
        )
        assert record.upgrade.upgrade_id == marker.upgrade_id
        new_main = await eventually(
            lambda: beats.of(version=NEW, role="main", after=started), what="the new main beating"
        )
        gap = beats.max_gap(started, ended)

    assert new_main[0].instance_id != old[0].instance_id
    assert {hb.instance_id for hb in beats.of(version=NEW, role="candidate")}.isdisjoint(
        {hb.instance_id for hb in new_main}
    ), "the new main is a new process, not the candidate promoted"
    assert current(machine) == f"versions/{NEW}"
    assert sorted(versions(machine)) == [OLD, NEW], "the previous version stays for a rollback"
    # Signed releases: the device verified 2.0.0 against the metadata it followed from its
    # pinned root (kept in its state dir), not against the marker's hash.
    tuf = f"/var/lib/harmony-fleet/{device}/tuf"
    for name in ("root.json", "metadata/timestamp.json", "metadata/targets.json"):
        assert machine.sh(f"test -s {tuf}/{name}", check=False).returncode == 0, name
    await eventually(lambda: not candidate_units(machine), what="no candidate unit left")
    procs = agent_processes(machine, device)
    assert len(procs) == 1 and "/current/agent agent run" in procs[0], procs
    # No heartbeat gap: the candidate beats until the new main has started (ADR-022, inv. 3).
    print(f"\nlongest heartbeat gap during the upgrade: {gap:.2f} s (interval {INTERVAL} s)")
    assert gap < 4 * INTERVAL, f"heartbeat gap of {gap:.2f} s during the upgrade"

    # The watch ended with Succeeded: its notes are gone, and a crash now (SIGKILL of the main)
    # is an ordinary restart of the same version, never a rollback.
    run_dir = f"/var/lib/harmony-fleet/{device}/run"
    assert machine.sh(f"ls {run_dir}/post-commit*.json", check=False).returncode != 0
    async with heartbeats(host_nc, device) as after:
        killed = time.monotonic()
        machine.run("systemctl", "kill", "-s", "KILL", "--kill-whom=main", f"{SERVICE}.service")
        again = await eventually(
            lambda: [
                hb
                for hb in after.of(version=NEW, role="main", after=killed)
                if hb.instance_id != new_main[-1].instance_id
            ],
            timeout=60,
            what="a new instance of the same version",
        )
    assert again[0].agent_version == NEW
    assert current(machine) == f"versions/{NEW}"
    final = await status_of(host_nc, device)
    assert final is not None and final.phase is AgentUpgradePhase.SUCCEEDED, final


async def test_a_candidate_that_never_heartbeats_is_rolled_back(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    install(machine, device, fleet_nats, served, OLD)
    async with heartbeats(host_nc, device) as beats, operator(fleet_nats):
        await eventually(lambda: beats.of(version=OLD, role="main"), timeout=60, what="old main")
        marker = await request_upgrade(host_nc, device, served, SILENT, cutover_s=8, hold_s=60)
        unit = f"{SERVICE}-candidate-{marker.upgrade_id}.service"
        await eventually(lambda: unit in candidate_units(machine), timeout=60, what="candidate")
        assert_sandboxed(machine, unit, device)  # the candidate runs in the main's sandbox
        status = await eventually(
            lambda: phase_is(host_nc, device, marker.upgrade_id, *TERMINAL),
            timeout=90,
            what="a terminal status",
        )
        after = time.monotonic()
        await eventually(
            lambda: beats.of(version=OLD, role="main", after=after), what="old main still beating"
        )
    assert status.phase is AgentUpgradePhase.ROLLED_BACK, status
    assert status.error_code == "cutover_timeout", status
    assert current(machine) == f"versions/{OLD}"
    assert versions(machine) == [OLD], "the silent version's folder is removed by the revert"
    assert candidate_units(machine) == []
    assert len(agent_processes(machine, device)) == 1
    journal = machine.run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout
    assert "never heartbeats" in journal, "the candidate's own words stay in the journal"


async def test_a_container_restart_during_cutover_converges_to_one_agent_and_the_truth(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    """No operator, so no stop: the old agent holds with the candidate beating; then the whole
    machine goes down. Transient units do not survive a boot; the main unit starts the old
    version, which must revert and say why."""
    install(machine, device, fleet_nats, served, OLD)
    async with heartbeats(host_nc, device) as beats:
        await eventually(lambda: beats.of(version=OLD, role="main"), timeout=60, what="old main")
        marker = await request_upgrade(host_nc, device, served, NEW, cutover_s=120, hold_s=300)
        await eventually(
            lambda: phase_is(host_nc, device, marker.upgrade_id, AgentUpgradePhase.HOLDING),
            timeout=90,
            what="Holding (candidate seen, no stop)",
        )
        assert len(candidate_units(machine)) == 1

        machine.shutdown()
        machine.boot()
        rebooted = time.monotonic()

        status = await eventually(
            lambda: phase_is(host_nc, device, marker.upgrade_id, *TERMINAL),
            timeout=90,
            what="a terminal status after the reboot",
        )
        await eventually(
            lambda: beats.of(version=OLD, role="main", after=rebooted), timeout=60, what="old main"
        )
    assert status.phase is AgentUpgradePhase.ROLLED_BACK, status
    assert status.error_code == "agent_restarted", status
    assert current(machine) == f"versions/{OLD}"
    assert versions(machine) == [OLD]
    assert candidate_units(machine) == []
    procs = agent_processes(machine, device)
    assert len(procs) == 1, procs
    assert not beats.of(version=NEW, after=rebooted), "no candidate beats after the reboot"
