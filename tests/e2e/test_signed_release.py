"""A real agent upgrades through a repository made and published by the release tooling
(``fleet release``'s modules, via ``testing.releases``): the device pins the repository's root,
the artifact comes from the ``fleet_artifacts`` object store, verified against signed metadata;
a version the repository does not sign is refused."""

from __future__ import annotations

from harmony_fleet.contracts import ErrorCode, Role
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.support import DEV, QUICK, P, invariants, reaches
from tests.helpers import eventually


async def test_a_device_upgrades_to_a_release_published_by_the_release_tooling(
    fleet: LocalFleet,
) -> None:
    for version in ("1.0.0", "2.0.0"):
        await fleet.publish(version)
    await fleet.add_device(DEV, "1.0.0")  # pins the fleet's repository's root

    def main_on(version: str) -> bool:
        beats = fleet.monitor.devices.get(DEV)
        last = beats.last if beats else None
        return bool(last and last.agent_version == version and last.role is Role.MAIN)

    await eventually(lambda: main_on("1.0.0"), timeout=60, what=f"{DEV} main on 1.0.0")

    # built, never signed
    unsigned = await fleet.request_upgrade(DEV, "2.1.0", timeouts=QUICK, publish=False)
    status = await reaches(fleet, unsigned, P.FAILED, P.SUCCEEDED, P.ROLLED_BACK, timeout=60)
    assert status.phase is P.FAILED and status.error_code == ErrorCode.UNTRUSTED.value
    assert status.error_detail.startswith("unsigned target"), status.error_detail

    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    await reaches(fleet, marker, P.SUCCEEDED, P.FAILED, P.ROLLED_BACK)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)
