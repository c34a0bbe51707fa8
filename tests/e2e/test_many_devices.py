"""Slow is not broken: 50 devices upgraded at once on one 2-core machine all succeed.

Each device is a real agent artifact under its own process-mode launcher (LocalFleet), with a
real operator process and real NATS. Upgrading 50 at once makes every self-test, candidate and
first start of a new main slow (the machine is saturated): a good version must still commit,
pass its post-commit watch (a short window, as on a test bench) and reach Succeeded; none may be
rolled back or land on a device's skip list because its first liveness touch came late.

The timeouts before the commit are generous on purpose: they are the operator's choice and are
not what this test is about; the watch window is short, so the start grace after the commit is
what is being tested. Marked ``slow`` (minutes); CI runs it once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from harmony_fleet.adapters.device.state_store import FileStateStore
from harmony_fleet.agent.build import STATE_FILE
from harmony_fleet.artifacts.manifest import ArtifactManifest
from harmony_fleet.contracts import AgentUpgradePhase, Role, UpgradeMarker, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LocalFleet
from tests.fleets import assert_no_agent_left
from tests.helpers import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

P = AgentUpgradePhase
log = logging.getLogger(__name__)

DEVICES = 50
INTERVAL = 1.0
#: Generous before the commit (not under test), a short watch after it (under test).
TIMEOUTS = UpgradeTimeouts(self_test_s=300, cutover_s=300, hold_s=600, watch_s=5)
TERMINAL = {P.SUCCEEDED, P.ROLLED_BACK, P.FAILED}


async def test_fifty_devices_upgraded_at_once_all_succeed(
    tmp_path: Path, built: tuple[Path, dict[str, ArtifactManifest]]
) -> None:
    out, manifests = built
    names = [f"edge-{i:02d}" for i in range(DEVICES)]
    async with LocalFleet(tmp_path / "fleet", interval_s=INTERVAL, operator_process=True) as fleet:
        for version in ("1.0.0", "2.0.0"):
            fleet.adopt(manifests[version], out)
        started = time.monotonic()
        for name in names:
            await fleet.add_device(name, "1.0.0")

        def all_main_on(version: str) -> bool:
            for name in names:
                beats = fleet.monitor.devices.get(name)
                hb = beats.last if beats is not None else None
                if hb is None or hb.agent_version != version or hb.role is not Role.MAIN:
                    return False
            return True

        await eventually(
            lambda: all_main_on("1.0.0"), timeout=300, interval=0.5, what="50 mains on 1.0.0"
        )
        up_s = time.monotonic() - started

        asked = time.monotonic()
        markers: list[UpgradeMarker] = await asyncio.gather(
            *(fleet.request_upgrade(name, "2.0.0", timeouts=TIMEOUTS) for name in names)
        )
        ended: dict[str, P] = {}

        async def all_ended() -> bool:
            for name, marker in zip(names, markers, strict=True):
                if name in ended:
                    continue
                s = await fleet.status(name)
                if s is not None and s.upgrade_id == marker.upgrade_id and s.phase in TERMINAL:
                    ended[name] = s.phase
            return len(ended) == DEVICES

        await eventually(all_ended, timeout=1200, interval=1.0, what="50 upgrades ended")
        upgrade_s = time.monotonic() - asked

        not_good = {}
        for name, marker in zip(names, markers, strict=True):
            s = await fleet.status(name)
            assert s is not None and s.upgrade_id == marker.upgrade_id
            if s.phase is not P.SUCCEEDED:
                not_good[name] = (s.phase.value, s.error_code, s.error_detail)
        assert not not_good, f"{len(not_good)} of {DEVICES} did not succeed: {not_good}"
        for name in names:
            device = fleet.devices[name]
            assert device.rollbacks == [], (name, device.rollbacks)
            assert device.layout.current_version() == "2.0.0", name
            state = FileStateStore(device.launch.state_dir / STATE_FILE).load()
            assert state.failed_versions == (), (name, state.failed_versions)
        log.warning(
            "50 devices: all up in %.1f s, all upgraded (Succeeded) in %.1f s", up_s, upgrade_s
        )
        print(f"\n50 devices: up in {up_s:.1f} s, all Succeeded {upgrade_s:.1f} s after the ask")
    assert_no_agent_left(fleet, names)
