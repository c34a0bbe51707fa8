"""Every upgrade ends with its own status, written before the next one begins, and what an outage
during the self-test may and may not conclude. The driver with its fakes; no sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harmony_fleet.contracts.upgrade import SELF_TEST_UNAVAILABLE_EXIT, UpgradeStatus
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade.device import ProcessOutcome
from harmony_fleet.core.upgrade.records import LocalState, remembered
from harmony_fleet.errors import OutcomeUnknown, Unavailable

from .support import NEW, TIMEOUTS, U1, U2, marker
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


# --- a NATS outage during the self-test never blames the version ----------------------------

NATS_DOWN = ProcessOutcome(exit_code=1, log_tail=("self-test nats: FAILED: cannot reach NATS",))


async def _self_test_fails_during(rig: Rig, outage: str) -> UpgradeStatus:
    """Run an upgrade whose self-test fails (exit 1, as any artifact's self-test does when its
    NATS check fails) while the old agent meets the outage in the way ``outage`` names."""
    rig.device.self_test_outcome = NATS_DOWN
    rig.device.hang.update({"stage", "self_test"})
    await rig.driver.run_marker(marker())
    await rig.reach(P.STAGING)
    await until(rig.driver.flush_status())
    if outage == "a status write fails":
        rig.sink.fail_next(OutcomeUnknown("timed out"), applied=True)
        rig.sink.fail_next(Unavailable("nats: connection closed"))
    rig.device.release("stage")
    await until(rig.device.wait_for_call("self_test"))
    if outage == "a status write fails":
        await until(rig.clock.wait_for_pending(2))  # the self-test deadline and a retry
        assert rig.sink.attempts == 2
    elif outage == "the connection is down":
        rig.sink.connected = False
    rig.device.release("self_test")
    await until(rig.device.wait_for_call("cleanup_staging"))  # the machine decided
    if outage == "a status write fails":
        rig.clock.advance(0.5)  # the writer retries: the second scripted failure
        await until(rig.clock.wait_for_pending(1))
        rig.clock.advance(1.0)  # NATS is back: the retry lands
    return await until(rig.sink.wait_for(lambda s: s.phase is P.FAILED))


@pytest.mark.parametrize("outage", ["a status write fails", "the connection is down"])
async def test_a_self_test_failing_while_nats_is_away_does_not_blame_the_version(
    rig: Rig, outage: str
) -> None:
    status = await _self_test_fails_during(rig, outage)
    assert status.error_code == "self_test_inconclusive"
    assert status.candidate_exit_code == 1 and status.candidate_log_tail == list(NATS_DOWN.log_tail)
    assert NEW not in rig.store.state.failed_versions, "an outage put a good version on skip"
    assert U1 in rig.store.state.finished
    rig.sink.connected = True
    rig.device.self_test_outcome = ProcessOutcome(exit_code=0)
    await rig.driver.run_marker(marker("u9"))  # a new request for the same version runs
    await until(rig.device.wait_for_call("self_test", 2))


async def test_a_self_test_that_says_nats_was_away_does_not_blame_the_version(rig: Rig) -> None:
    rig.device.self_test_outcome = ProcessOutcome(
        exit_code=SELF_TEST_UNAVAILABLE_EXIT, log_tail=("self-test nats: FAILED: timed out",)
    )
    await rig.driver.run_marker(marker())
    status = await until(rig.sink.wait_for(lambda s: s.phase is P.FAILED))
    assert status.error_code == "self_test_inconclusive"
    assert NEW not in rig.store.state.failed_versions


async def test_a_self_test_failing_with_nats_there_still_blames_the_version(rig: Rig) -> None:
    rig.device.self_test_outcome = NATS_DOWN
    await rig.driver.run_marker(marker())
    status = await until(rig.sink.wait_for(lambda s: s.phase is P.FAILED))
    assert status.error_code == "self_test_failed"
    assert NEW in rig.store.state.failed_versions


def test_the_state_file_effects_have_one_reading() -> None:
    state = LocalState()
    for effect in (
        fx.RecordInstalled(version=NEW, sha256="ab" * 32),
        fx.RecordPrevious(version=NEW),
        fx.RememberFailedVersion(version=NEW),
        fx.RecordFinished(upgrade_id=U1),
    ):
        updated = remembered(state, effect)
        assert updated is not None and updated != state, effect
        state = updated
    assert state == LocalState(
        finished=(U1,), failed_versions=(NEW,), previous=NEW, installed={NEW: "ab" * 32}
    )
    assert remembered(state, fx.CancelWork()) is None  # not a state-file effect
