"""End-to-end fixtures: real artifacts (built once per session), a fleet per test.

The fleet runs on signed releases, as every :class:`~harmony_fleet.testing.localfleet.LocalFleet`
does: every device pins the repository's root, every version a test upgrades to is published
through the release tooling first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harmony_fleet.testing.localfleet import LocalFleet
from tests.fleets import Built, build_versions, running

#: version -> faults baked into it.
BUILDS: dict[str, tuple[str, ...]] = {
    "1.0.0": (),
    "2.0.0": (),
    "2.1.0": ("self-test-fail",),
    "2.2.0": ("self-test-hang",),
    "2.3.0": ("no-heartbeat",),
    "2.4.0": ("no-heartbeat", "crash-after=1"),
    "2.5.0": ("crash-as-main-after=2",),  # good candidate, crashes soon after the commit
    "2.6.0": ("stop-heartbeat-as-main-after=2",),  # good candidate, goes silent as the main
}

INTERVAL = 0.5


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, BUILDS)


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[LocalFleet]:
    fleet = LocalFleet(tmp_path / "fleet", interval_s=INTERVAL, operator_process=True)
    async with running(fleet, built) as f:
        yield f
