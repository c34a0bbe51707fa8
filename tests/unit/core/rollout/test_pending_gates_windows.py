"""Offline devices wait until the deadline; gates skip with a reason; windows make devices wait."""

from __future__ import annotations

import datetime as dt

import pytest

from harmony_fleet.contracts.rollout import DeviceState, RolloutPhase, Share
from harmony_fleet.core.rollout.fleet import DEADLINE_PASSED, OFFLINE, OUTSIDE_WINDOW
from harmony_fleet.core.rollout.windows import parse_window

from .world import NEW, World, fleet, rollout

S = DeviceState
P = RolloutPhase
PARIS = "Europe/Paris"


def test_an_offline_device_is_pending_and_picked_up_when_it_comes_back() -> None:
    devices = fleet(6)
    devices[5].online = False
    world = World(rollout(canary=Share(count=1), max_in_flight=Share(count=2)), devices)
    for _ in range(40):
        world.tick()
    assert world.status.phase is P.WAVES  # not done: one device is still out
    assert world.plans[-1].states["d005"] == (S.PENDING, OFFLINE)
    assert "d005" not in world.started()
    devices[5].online = True
    final = world.run()
    assert final.status.phase is P.DONE
    assert devices[5].version == NEW


def test_at_the_deadline_devices_never_started_are_skipped() -> None:
    devices = fleet(4)
    devices[3].online = False
    world = World(rollout(canary=Share(count=1), deadline=world_deadline()), devices)
    for _ in range(30):
        plan = world.tick()
    assert plan.wake_at == world_deadline()
    world.now = world_deadline()
    final = world.run()
    assert final.status.phase is P.DONE
    assert final.states["d003"] == (S.SKIPPED, DEADLINE_PASSED)
    assert final.status.counts == {S.SUCCEEDED: 3, S.SKIPPED: 1}


def world_deadline() -> float:
    from .world import T0

    return T0 + 3600.0


@pytest.mark.parametrize(
    ("labels", "failed", "skip", "reason"),
    [
        ({"free_disk_bytes": "150"}, frozenset(), (), "gate:insufficient_disk 150 < 2 x 100"),
        ({"free_disk_bytes": "lots"}, frozenset(), (), "gate:insufficient_disk 0 < 2 x 100"),
        ({"executor": "docker"}, frozenset(), (), "gate:unknown_executor docker"),
        ({}, frozenset({NEW}), (), "gate:version_failed_before"),
        ({}, frozenset(), ("d002",), "gate:skip_list d002"),
        (
            {"hardware_model": "rpi3"},
            frozenset(),
            ("d009", "hardware_model=rpi3"),
            "gate:skip_list hardware_model=rpi3",
        ),
        # the skip list is checked first: it is the release manager's word on this version
        (
            {"free_disk_bytes": "1", "os_release": "debian-11"},
            frozenset(),
            ("os_release=debian-11",),
            "gate:skip_list os_release=debian-11",
        ),
    ],
)
def test_a_device_failing_a_gate_is_skipped_with_the_reason_and_never_attempted(
    labels: dict[str, str], failed: frozenset[str], skip: tuple[str, ...], reason: str
) -> None:
    devices = fleet(3)
    devices[2].labels = labels
    devices[2].failed_versions = failed
    world = World(rollout(canary=Share(count=1)), devices, artifact_size=100, skip=skip)
    final = world.run()
    assert final.status.phase is P.DONE
    assert final.states["d002"] == (S.SKIPPED, reason)
    assert devices[2].markers_seen == []


@pytest.mark.parametrize(
    ("labels", "skip"),
    [
        ({"free_disk_bytes": "200"}, ()),
        ({"executor": "systemd"}, ()),
        ({"executor": "process"}, ()),
        ({}, ()),
        # a skip entry names a device id or a label's exact value, nothing near it
        ({"hardware_model": "rpi3"}, ("d0", "d0011", "hardware_model=rpi", "model=rpi3")),
        ({}, ("hardware_model=",)),
    ],
)
def test_devices_that_pass_the_gates_are_upgraded(
    labels: dict[str, str], skip: tuple[str, ...]
) -> None:
    devices = fleet(2)
    devices[1].labels = labels
    world = World(rollout(canary=Share(count=1)), devices, artifact_size=100, skip=skip)
    final = world.run()
    assert final.states["d001"] == (S.SUCCEEDED, "")


def test_a_device_whose_gate_passes_later_is_taken_again() -> None:
    devices = fleet(3)
    devices[2].labels = {"free_disk_bytes": "10"}
    world = World(rollout(canary=Share(count=1)), devices, artifact_size=100)
    world.tick()
    assert world.progress["d002"].state is S.SKIPPED
    devices[2].labels = {"free_disk_bytes": "1000"}
    final = world.run()
    assert final.states["d002"] == (S.SUCCEEDED, "")


def _paris(day: int, hour: int, minute: int = 0) -> float:
    """A time in December 2026, Paris wall clock (2026-12-07 is a Monday)."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=_zone(PARIS)).timestamp()


def _zone(name: str) -> dt.tzinfo:
    from harmony_fleet.core.rollout.windows import zoneinfo_resolver

    return zoneinfo_resolver(name)


def test_a_device_outside_its_window_waits_until_it_opens() -> None:
    window = parse_window("Mon-Fri 02:00-05:00 Europe/Paris")
    spec = rollout(canary=Share(count=1), windows=[window])
    world = World(spec, fleet(3), now=_paris(5, 12))  # Saturday noon
    plan = world.tick(dt=0.0)
    assert world.started() == set()
    assert {why for _, why in plan.states.values()} == {OUTSIDE_WINDOW}
    assert plan.wake_at == _paris(7, 2)  # Monday 02:00 Paris
    world.now = _paris(7, 2)
    final = world.run()
    assert final.status.phase is P.DONE
    assert world.now < _paris(7, 5)


def test_without_a_zone_the_window_is_each_devices_own() -> None:
    window = parse_window("Mon-Sun 02:00-03:00")
    devices = fleet(2)
    devices[0].labels = {"time_zone": "Asia/Tokyo"}
    devices[1].labels = {"time_zone": PARIS}
    world = World(rollout(canary=Share(count=2), windows=[window]), devices)
    world.now = dt.datetime(2026, 12, 8, 2, 30, tzinfo=_zone("Asia/Tokyo")).timestamp()
    plan = world.tick(dt=0.0)
    assert plan.states["d000"][0] is S.IN_PROGRESS
    assert plan.states["d001"] == (S.PENDING, OUTSIDE_WINDOW)
    assert plan.wake_at == _paris(8, 2)


def test_starts_are_spread_and_downloads_bounded() -> None:
    spec = rollout(canary=Share(count=1), max_in_flight=Share(count=10), max_downloads=3)
    world = World(spec, fleet(21))
    peak = 0
    while not world.tick().finished:
        downloading = sum(
            1
            for d in world.devices.values()
            if d.marker
            and (
                d.status is None
                or d.status.upgrade_id != d.marker
                or d.status.phase.value in ("Requested", "Staging")
            )
        )
        peak = max(peak, downloading)
    assert peak == 3
    assert all(d.version == NEW for d in world.devices.values())


def test_the_spread_is_stable_across_replays() -> None:
    spec = rollout(canary=Share(count=5), max_in_flight=Share(count=5), spread_s=60.0)
    a = World(spec, fleet(8)).plan()
    b = World(spec, fleet(8)).plan()
    assert a == b
    assert len({r.not_before for r in a.writes if r.not_before}) == 5
