"""Signed releases' pure rules (``core.upgrade.trust``) and the version floor in the driver."""

from __future__ import annotations

import asyncio

import pytest

from harmony_fleet.contracts.ids import Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.core.upgrade.records import LocalState, with_floor
from harmony_fleet.core.upgrade.states import WATCH_SETTLE_S, ErrorCode
from harmony_fleet.core.upgrade.trust import (
    SignedRelease,
    floor_refusal,
    min_version_refusal,
    raised_floor,
    target_path,
    version_key,
)

from .support import NEW, OLD, TIMEOUTS, U1, marker
from .test_driver import make_rig, until
from .test_driver_after_commit import committed_record, rig_with


@pytest.mark.parametrize(
    ("low", "high"),
    [("1.9.0", "1.10.0"), ("1.0.0", "2.0.0"), ("2.0", "2.0.1"), ("1.0.0", "1.0.0.post1")],
)
def test_versions_are_ordered_by_their_numbers(low: str, high: str) -> None:
    assert version_key(low) < version_key(high)


def test_the_floor_only_rises() -> None:
    assert raised_floor(None, "1.0.0") == "1.0.0"
    assert raised_floor("2.0.0", "1.5.0") == "2.0.0"
    assert raised_floor("2.0.0", "2.1.0") == "2.1.0"
    state = with_floor(LocalState(), Version("2.0.0"))
    assert with_floor(state, Version("1.0.0")) is state
    assert state.version_floor == "2.0.0"


def test_a_downgrade_below_the_floor_is_refused_unless_it_is_kept_on_disk() -> None:
    refusal = floor_refusal("1.5.0", "2.0.0", on_disk=False)
    assert refusal is not None and refusal.startswith("downgrade below floor")
    assert floor_refusal("1.5.0", "2.0.0", on_disk=True) is None
    assert floor_refusal("2.0.0", "2.0.0", on_disk=False) is None
    assert floor_refusal("1.0.0", None, on_disk=False) is None


def test_a_target_signed_only_from_a_minimum_version_is_refused_below_it() -> None:
    release = SignedRelease(
        path=target_path("3.0.0"), version="3.0.0", length=1, sha256="a" * 64, min_version="2.0.0"
    )
    refused = min_version_refusal(release, "1.0.0")
    assert refused is not None and refused.startswith("below min_version")
    assert min_version_refusal(release, "2.0.0") is None
    assert target_path("3.0.0") == "harmony-fleet-agent-3.0.0.pyz"


async def test_the_driver_refuses_a_marker_below_the_floor_before_staging() -> None:
    rig = make_rig(LocalState(version_floor=Version("3.0.0")))
    await rig.driver.resume_after_restart()
    try:
        await rig.driver.run_marker(marker())
        await rig.reach(P.FAILED)
        latest = rig.sink.latest
        assert latest is not None and latest.error_code == ErrorCode.UNTRUSTED
        assert latest.error_detail.startswith("downgrade below floor"), latest.error_detail
        assert "stage" not in rig.device.names and rig.device.current == OLD
        assert rig.store.state.version_floor == "3.0.0"
    finally:
        await rig.driver.close()


async def test_the_floor_is_the_running_version_and_a_commit_alone_does_not_raise_it() -> None:
    rig = make_rig()
    await rig.driver.resume_after_restart()
    try:
        assert rig.store.state.version_floor == OLD
        await rig.to_cutover()
        await rig.heartbeat()
        await rig.reach(P.HOLDING)
        reply = await rig.driver.on_stop(U1, "c1")
        assert reply is not None and reply.ok
        await until(rig.driver.wait_handover())
        assert rig.store.state.version_floor == OLD, "on probation until its watch passes"
    finally:
        await rig.driver.close()


async def test_the_new_main_raises_the_floor_only_once_its_watch_passed() -> None:
    rig = rig_with(LocalState(finished=(U1,), in_flight=committed_record()), running=NEW)
    try:
        await rig.driver.resume_after_restart()
        await until(rig.sink.wait_for_phase(P.COMMITTED))
        assert rig.store.state.version_floor is None, "a main in its window is not the floor"
        await until(rig.clock.wait_for_pending())
        rig.clock.advance(TIMEOUTS.watch_s)
        await asyncio.sleep(0)
        rig.clock.advance(WATCH_SETTLE_S)
        await until(rig.sink.wait_for_phase(P.SUCCEEDED))
        await until(rig.driver.flush_status())
        assert rig.store.state.version_floor == NEW
    finally:
        await rig.driver.close()
