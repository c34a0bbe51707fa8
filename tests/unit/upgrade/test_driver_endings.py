"""Every upgrade ends with its own status, written before the next one begins, and what an outage
during the self-test may and may not conclude. The driver with its fakes; no sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.contracts.upgrade import UpgradeStatus

from .support import TIMEOUTS, U1, U2, marker
from .test_driver import Rig, make_rig, until

U3 = "u3"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = make_rig()
    await r.driver.resume_after_restart()
    yield r
    await r.driver.close()


def _of(written: list[UpgradeStatus], uid: str) -> list[P]:
    return [s.phase for s in written if s.upgrade_id == uid]


async def test_a_superseded_upgrade_ends_as_superseded_before_the_newer_one_stages(
    rig: Rig,
) -> None:
    rig.device.hang.add("stage")
    await rig.driver.run_marker(marker())
    await rig.reach(P.STAGING)
    await rig.driver.run_marker(marker(U2, "3.0.0"))
    await until(rig.driver.flush_status())
    written = rig.sink.written
    ended = next(s for s in written if s.upgrade_id == U1 and s.phase is P.SUPERSEDED)
    assert ended.superseded_by == U2 and ended.error_code == "superseded"
    assert _of(written, U1)[-1] is P.SUPERSEDED, "the superseded upgrade's last word"
    newer = next(i for i, s in enumerate(written) if s.upgrade_id == U2)
    assert written.index(ended) < newer, "the end is written before the newer one begins"
    assert rig.sink.latest is not None and rig.sink.latest.upgrade_id == U2
    assert rig.driver.snapshot.upgrade_id == U2


async def test_a_marker_replaced_while_it_waited_ends_as_superseded(rig: Rig) -> None:
    await rig.to_cutover()
    await rig.driver.run_marker(marker(U2, "3.0.0"))
    await rig.driver.run_marker(marker(U3, "4.0.0"))
    await until(rig.driver.flush_status())
    assert _of(rig.sink.written, U2) == [P.SUPERSEDED]
    latest = rig.sink.latest
    assert latest is not None and latest.upgrade_id == U1 and latest.pending_upgrade_id == U3
    rig.device.hang.add("stage")
    rig.clock.advance(TIMEOUTS.cutover_s)  # U1 rolls back, then U3 (not U2) is taken up
    await until(rig.sink.wait_for(lambda s: s.upgrade_id == U3 and s.phase is P.STAGING))
    assert _of(rig.sink.written, U1)[-1] is P.ROLLED_BACK
    assert _of(rig.sink.written, U2) == [P.SUPERSEDED]


async def test_an_upgrade_that_ends_as_the_waiting_one_starts_keeps_its_end(rig: Rig) -> None:
    await rig.to_cutover()
    await rig.driver.run_marker(marker(U2, "3.0.0"))
    rig.device.hang.add("stage")
    rig.clock.advance(TIMEOUTS.cutover_s)
    await until(rig.sink.wait_for(lambda s: s.upgrade_id == U2 and s.phase is P.STAGING))
    await until(rig.driver.flush_status())
    assert P.ROLLED_BACK in _of(rig.sink.written, U1), "U1's end was merged into U2's start"
