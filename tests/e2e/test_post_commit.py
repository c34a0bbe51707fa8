"""After the commit, with real processes (issue 6): the watch window, the device rolling itself
back without the operator, the skip list and ``--force``, ``fleet rollback``, and garbage
collection. Real artifacts built with named faults, real supervisor, real operator process.

Each test ends with ADR-022's invariants (one agent process, ``current`` where the status says,
a terminal status that tells why).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from harmony_fleet.contracts import AgentUpgradePhase, UpgradeMarker, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.support import DEV, QUICK, P, invariants, reaches, started
from tests.helpers import eventually, run_fleet

#: A window long enough for three crashes of a main that lives ~2 s, short enough for a test.
WATCHED = UpgradeTimeouts(self_test_s=30, cutover_s=8, hold_s=30, watch_s=40, watch_max_failures=3)


@contextlib.asynccontextmanager
async def registry_phases(
    fleet: LocalFleet, marker: UpgradeMarker
) -> AsyncIterator[list[AgentUpgradePhase]]:
    """Every phase the operator reflected into the registry for ``marker``, in order."""
    seen: list[AgentUpgradePhase] = []

    async def poll() -> None:
        while True:
            record = await fleet.record(DEV)
            up = record.upgrade if record is not None else None
            mine = up is not None and up.upgrade_id == marker.upgrade_id
            if mine and up is not None and (not seen or seen[-1] is not up.phase):
                seen.append(up.phase)
            await asyncio.sleep(0.1)

    task = asyncio.ensure_future(poll())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_new_main_that_crashes_after_the_commit_is_rolled_back_by_the_device(
    fleet: LocalFleet,
) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(DEV, "2.5.0", timeouts=WATCHED)
    async with registry_phases(fleet, marker) as seen:
        committed = await reaches(fleet, marker, P.COMMITTED)
        assert committed.watch_until is not None
        status = await reaches(fleet, marker, P.ROLLED_BACK, timeout=120)
        await eventually(lambda: P.ROLLED_BACK in seen, timeout=20, what="registry: RolledBack")
    # Why, in the status: the new version's own exit code and last lines.
    assert status.error_code == "post_commit", status
    assert "crash_loop" in status.error_detail and "3 times" in status.error_detail
    assert status.candidate_exit_code == 3
    assert any("build fault: crashing" in line for line in status.candidate_log_tail)
    # Decided by the supervisor, inside the window, without the operator.
    (rollback,) = fleet.devices[DEV].rollbacks
    assert rollback.exit_codes == (3, 3, 3)
    assert rollback.rolled_back_at < committed.watch_until
    # The operator held at Committed ("watching") and never said Succeeded.
    assert P.COMMITTED in seen and P.SUCCEEDED not in seen, seen
    await invariants(fleet, marker, current="1.0.0", phase=P.ROLLED_BACK)
    layout = fleet.devices[DEV].layout
    assert layout.has_version("2.5.0"), "kept for a person to look at, until the next success"
    # The next successful upgrade collects it: the running and the previous version remain.
    good = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    done = await reaches(fleet, good, P.SUCCEEDED)
    assert done.previous_version == "1.0.0"
    await eventually(
        lambda: layout.list_versions() == ["1.0.0", "2.0.0"], timeout=10, what="2.5.0 collected"
    )
    await invariants(fleet, good, current="2.0.0", phase=P.SUCCEEDED)


async def test_a_new_main_that_stops_heartbeating_is_rolled_back_then_refused_unless_forced(
    fleet: LocalFleet,
) -> None:
    await started(fleet)
    marker = await fleet.request_upgrade(DEV, "2.6.0", timeouts=WATCHED)
    committed = await reaches(fleet, marker, P.COMMITTED)
    status = await reaches(fleet, marker, P.ROLLED_BACK, timeout=120)
    assert status.error_code == "post_commit", status
    assert "no_heartbeat" in status.error_detail
    assert any("heartbeats stop here" in line for line in status.candidate_log_tail)
    (rollback,) = fleet.devices[DEV].rollbacks
    assert committed.watch_until is not None and rollback.rolled_back_at < committed.watch_until
    await invariants(fleet, marker, current="1.0.0", phase=P.ROLLED_BACK)
    # Remembered: the same version is refused next time...
    again = await fleet.request_upgrade(DEV, "2.6.0", timeouts=WATCHED)
    refused = await reaches(fleet, again, P.FAILED)
    assert refused.error_code == "version_failed_before"
    assert fleet.devices[DEV].layout.current_version() == "1.0.0"
    # ...and accepted with force: it goes all the way to a commit again.
    forced = await fleet.request_upgrade(DEV, "2.6.0", timeouts=WATCHED, force=True)
    await reaches(fleet, forced, P.COMMITTED, timeout=120)
    assert fleet.devices[DEV].layout.current_version() == "2.6.0"


async def test_fleet_rollback_returns_to_the_kept_version_with_the_commit_discipline(
    fleet: LocalFleet,
) -> None:
    await started(fleet)
    nats = tuple(fleet.cli_nats_args())

    async def fleet_cli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
        done = await asyncio.to_thread(run_fleet, *args, *nats, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    code, _, err = await fleet_cli("rollback", "nobody-here")
    assert code == 3 and "unknown" in err, err
    code, _, err = await fleet_cli("rollback", DEV)
    assert code == 3 and "no previous version" in err, err
    upgrade = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    code, _, err = await fleet_cli("rollback", DEV)
    assert code == 4 and "in flight" in err, err  # one upgrade at a time
    done = await reaches(fleet, upgrade, P.SUCCEEDED)
    assert done.previous_version == "1.0.0"
    assert done.previous_sha256 == fleet.artifacts["1.0.0"].sha256
    await invariants(fleet, upgrade, current="2.0.0", phase=P.SUCCEEDED)
    # Nothing may be downloaded: 1.0.0 is no signed target (so not in the object store either),
    # and its file is taken off the artifact folder.
    assert "1.0.0" not in [r.version for r in fleet.releases.repository().releases()]
    (fleet.artifact_dir / fleet.artifacts["1.0.0"].file).unlink()

    code, out, err = await fleet_cli(
        "rollback", DEV, "--watch-window", "1", "--wait", "150", "--json", timeout=180
    )
    assert code == 0, (out, err)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["outcome"] == "ok"
    final = result["status"]
    assert (final["from_version"], final["to_version"]) == ("2.0.0", "1.0.0")
    # The same discipline as an upgrade: a candidate ran and was seen before the switch.
    assert final["candidate_instance_id"], final
    uid = result["upgrade_id"]
    assert (fleet.devices[DEV].run_dir / f"candidate-{uid}.log").exists()
    status = await fleet.status(DEV)
    assert status is not None and status.previous_version == "2.0.0"
    marker = UpgradeMarker(
        upgrade_id=uid,
        device_id=DEV,
        target_version="1.0.0",
        artifact_url="",
        sha256=done.previous_sha256,
        requested_at=0.0,
    )
    await invariants(fleet, marker, current="1.0.0", phase=P.SUCCEEDED)
    assert fleet.devices[DEV].layout.list_versions() == ["1.0.0", "2.0.0"]
