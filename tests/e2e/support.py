"""Shared steps and checks of the end-to-end tests (ADR-022's invariants, with real processes)."""

from __future__ import annotations

from pathlib import Path

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    Role,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
)
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.conftest import INTERVAL
from tests.helpers import eventually

P = AgentUpgradePhase
DEV = "edge-e2e"
#: A one-second watch window: these tests are about the commit, test_post_commit about after it.
QUICK = UpgradeTimeouts(self_test_s=30, cutover_s=8, hold_s=30, watch_s=1)


async def started(
    fleet: LocalFleet,
    version: str = "1.0.0",
    *,
    trust_root: Path | None = None,
    release_mirror: str | None = None,
) -> None:
    """DEV on ``version``, heartbeating as main (``trust_root``/``release_mirror``: see
    :meth:`LocalFleet.add_device`)."""
    await fleet.add_device(DEV, version, trust_root=trust_root, release_mirror=release_mirror)

    def main_beats() -> bool:
        beats = fleet.monitor.devices.get(DEV)
        return bool(
            beats
            and beats.last
            and beats.last.agent_version == version
            and beats.last.role is Role.MAIN
        )

    await eventually(main_beats, timeout=60, what=f"{DEV} heartbeating as main on {version}")


async def reaches(
    fleet: LocalFleet, marker: UpgradeMarker, *phases: P, timeout: float = 90
) -> UpgradeStatus:
    """Wait until DEV's status for ``marker`` is in one of ``phases``; on a timeout the error
    names the last status seen and the agent's last log lines (a CI log is all there is)."""
    seen: list[UpgradeStatus | None] = [None]

    async def check() -> UpgradeStatus | None:
        s = seen[0] = await fleet.status(DEV)
        return (
            s if s is not None and s.upgrade_id == marker.upgrade_id and s.phase in phases else None
        )

    try:
        result: UpgradeStatus = await eventually(
            check, timeout=timeout, interval=0.05, what=f"{'/'.join(p.value for p in phases)}"
        )
    except AssertionError as exc:
        last = seen[0]
        said = (
            f"last status: {last.upgrade_id} {last.phase.value} {last.error_code} "
            f"{last.error_detail!r}"
            if last
            else "no status"
        )
        raise AssertionError(
            f"{exc}; marker {marker.upgrade_id} for {marker.version}; {said}\n"
            f"{agent_log_tail(fleet)}"
        ) from exc
    return result


def agent_log_tail(fleet: LocalFleet, lines: int = 40) -> str:
    """DEV's newest log lines: every file in its run directory and its launcher's log."""
    device = fleet.devices.get(DEV)
    if device is None:
        return f"{DEV}: not installed"
    files = [*sorted(device.run_dir.glob("*.log")), device.launch.state_dir / "launcher.log"]
    out = []
    for path in files:
        if path.is_file():
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(out) or f"{DEV}: no log files in {device.run_dir}"


async def invariants(fleet: LocalFleet, marker: UpgradeMarker, *, current: str, phase: P) -> None:
    await eventually(
        lambda: len(fleet.agent_processes(DEV)) == 1,
        timeout=30,
        what="exactly one agent process for the device",
    )
    assert fleet.devices[DEV].layout.current_version() == current
    status = await fleet.status(DEV)
    assert status is not None and status.upgrade_id == marker.upgrade_id
    assert status.phase is phase, (status.phase, status.error_code, status.error_detail)

    def runs_current() -> bool:
        last = fleet.monitor.devices[DEV].last
        return last is not None and last.agent_version == current and last.role is Role.MAIN

    await eventually(runs_current, timeout=30, what=f"the one agent runs {current} as main")


def no_lost_heartbeat(fleet: LocalFleet) -> None:
    gap = fleet.monitor.devices[DEV].max_gap_s
    assert gap < 2 * INTERVAL, f"a heartbeat was lost: gap {gap:.2f}s at interval {INTERVAL}s"
