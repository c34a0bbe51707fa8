"""Canaries first and stratified, then waves bounded by max-in-flight, halting by themselves."""

from __future__ import annotations

import itertools

import pytest

from harmony_fleet.contracts.rollout import DeviceState, RolloutPhase, Share
from harmony_fleet.core.rollout import canary
from harmony_fleet.core.rollout.fleet import HEARTBEAT_LOST, salt_of

from .world import NEW, World, fleet, rollout

S = DeviceState
P = RolloutPhase


def _stratified_fleet() -> list:
    devices = fleet(48)
    values = itertools.product(["arm64", "amd64"], ["pi4", "nuc", "jetson"], ["lte", "wifi"])
    combos = list(values)
    for i, device in enumerate(devices):
        arch, model, link = combos[i % len(combos)]
        device.labels = {"arch": arch, "hardware_model": model, "link_type": link}
    # the ids that sort first are all one model: taking the first N would try only it
    for device in devices[:10]:
        device.labels["hardware_model"] = "pi4"
    return devices


def test_the_canary_cohort_covers_every_value_of_every_stratum() -> None:
    devices = _stratified_fleet()
    spec = rollout(canary=Share(count=3))
    chosen = canary.choose([d.view() for d in devices], spec.strata, 3, salt_of(spec))
    by_id = {d.device_id: d for d in devices}
    for key in ("arch", "hardware_model", "link_type"):
        seen = {by_id[c].labels[key] for c in chosen}
        assert seen == {d.labels[key] for d in devices}, key
    assert len(chosen) == 3  # three canaries are enough to cover 2 x 3 x 2 values


def test_a_larger_cohort_spreads_over_the_combined_buckets_too() -> None:
    devices = _stratified_fleet()
    spec = rollout()
    chosen = canary.choose([d.view() for d in devices], spec.strata, 12, salt_of(spec))
    by_id = {d.device_id: d for d in devices}
    buckets = {tuple(sorted(by_id[c].labels.items())) for c in chosen}
    assert len(chosen) == 12 and len(set(chosen)) == 12
    assert len(buckets) == 12  # one per combination before any bucket gets a second
    assert chosen != sorted(chosen)[:12] or len(devices) == 12


def test_the_cohort_may_exceed_the_count_to_cover_every_value() -> None:
    devices = fleet(6)
    for i, device in enumerate(devices):
        device.labels = {"arch": f"a{i}"}
    spec = rollout()
    chosen = canary.choose([d.view() for d in devices], ["arch"], 2, salt_of(spec))
    assert len(chosen) == 6


def test_only_canaries_start_until_they_succeeded_and_the_soak_passed() -> None:
    world = World(
        rollout(canary=Share(count=2), max_in_flight=Share(count=4), soak_s=100.0), fleet(10)
    )
    for _ in range(20):
        world.tick()
    assert len(world.started()) == 2
    assert world.status.phase is P.SOAKING
    assert world.plans[-1].wake_at == world.status.soak_until
    world.now = world.status.soak_until or 0.0
    world.tick()
    assert world.status.phase is P.WAVES and world.status.wave == 1
    assert len(world.started()) == 6
    final = world.run()
    assert final.status.phase is P.DONE
    assert all(d.version == NEW for d in world.devices.values())


@pytest.mark.parametrize(
    ("width", "devices", "expected_max"),
    [(Share(count=3), 10, 3), (Share(percent=25.0), 20, 5), (Share(count=1), 4, 1)],
)
def test_never_more_than_max_in_flight_in_progress(
    width: Share, devices: int, expected_max: int
) -> None:
    world = World(rollout(canary=Share(count=8), max_in_flight=width), fleet(devices))
    peak = 0
    while not world.tick().finished:
        peak = max(peak, sum(1 for r in world.progress.values() if r.state is S.IN_PROGRESS))
    assert peak == expected_max  # reached, never exceeded (8 canaries start by the bound too)


def test_a_failing_canary_halts_with_no_device_beyond_the_canaries_touched() -> None:
    devices = fleet(20)
    world = World(rollout(canary=Share(count=4), max_in_flight=Share(count=10)), devices)
    world.plan()
    bad = next(iter(r.device_id for r in world.progress.values() if r.wave == 0))
    world.devices[bad].behaviour = "fail"
    final = world.run(ticks=50)
    assert final.status.phase is P.HALTED
    assert world.started() <= {r.device_id for r in world.progress.values() if r.wave == 0}
    assert [o.device_id for o in final.status.halted_devices] == [bad]
    assert final.status.halted_devices[0].reason == "self_test_failed"
    assert "canary" in final.status.halt_reason
    for _ in range(10):
        assert not world.tick().starts


@pytest.mark.parametrize(
    ("failing", "rate", "halts"),
    [(1, 10.0, False), (2, 10.0, True), (0, 0.0, False), (1, 0.0, True), (5, 50.0, False)],
)
def test_a_wave_halts_when_its_failed_share_exceeds_the_threshold(
    failing: int, rate: float, halts: bool
) -> None:
    world = World(
        rollout(canary=Share(count=1), max_in_flight=Share(count=10), halt_failure_rate=rate),
        fleet(31),
    )
    while world.status.wave < 1:
        world.tick()
    wave1 = sorted(r.device_id for r in world.progress.values() if r.wave == 1)
    assert len(wave1) == 10
    for device_id in wave1[:failing]:
        world.devices[device_id].behaviour = "rollback"
    final = world.run()
    assert (final.status.phase is P.HALTED) is halts
    if halts:
        assert world.started() == {r.device_id for r in world.progress.values() if r.wave in (0, 1)}
        assert {o.state for o in final.status.halted_devices} == {S.ROLLED_BACK}
        assert "wave 1" in final.status.halt_reason
    else:
        assert final.status.phase is P.DONE


def test_a_halt_withdraws_starts_not_yet_sent() -> None:
    world = World(
        rollout(
            canary=Share(count=1),
            max_in_flight=Share(count=5),
            spread_s=1000.0,
            halt_failure_rate=0.0,
        ),
        fleet(12),
    )
    while world.status.wave < 1:
        world.tick(dt=1000.0)  # the canary's spread passes
    formed = world.status.wave_started_at
    assert formed is not None
    wave1 = [r for r in world.progress.values() if r.wave == 1]
    assert all(r.not_before is not None and formed <= r.not_before < formed + 1000 for r in wave1)
    world.now = formed + 500  # the last plan ran at `formed`: half the spread has passed now
    world.tick(dt=0.0)
    sent = {d for d in world.started() if world.progress[d].wave == 1}
    unsent = {r.device_id for r in wave1} - sent
    assert sent and unsent  # the spread holds some back
    for device_id in sent:
        world.devices[device_id].behaviour = "fail"
    final = world.run(ticks=30)
    assert final.status.phase is P.HALTED
    assert not (world.started() & unsent)
    assert all(world.progress[d].state is S.PENDING for d in unsent)


def test_a_heartbeat_lost_after_the_commit_counts_as_a_failure() -> None:
    world = World(rollout(canary=Share(count=1)), fleet(5))
    world.plan()
    only = next(iter(world.progress))
    world.devices[only].behaviour = "lost"
    final = world.run(ticks=20)
    assert final.status.phase is P.HALTED
    assert final.states[only] == (S.FAILED, HEARTBEAT_LOST)


def test_a_device_already_at_the_version_succeeds_without_a_marker() -> None:
    devices = fleet(3)
    devices[0].version = NEW
    world = World(rollout(canary=Share(count=1)), devices)
    final = world.run()
    assert final.status.phase is P.DONE
    assert devices[0].markers_seen == []
    assert final.states["d000"] == (S.SUCCEEDED, "already_at_version")


def test_a_rollout_with_no_device_is_done_at_once() -> None:
    world = World(rollout(selector={"site": "nowhere"}), fleet(3))
    assert world.plan().status.phase is P.DONE
    assert world.started() == set()


def test_the_selector_picks_the_devices() -> None:
    devices = fleet(6)
    for device in devices[:2]:
        device.labels = {"site": "a"}
    final = World(rollout(selector={"site": "a"}, canary=Share(count=1)), devices).run()
    assert set(final.states) == {"d000", "d001"}
    assert final.status.phase is P.DONE
