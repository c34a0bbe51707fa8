"""The simulated fleet is drawn from the seed: exact shares of faults, stable labels and
timings, refused flags named."""

from __future__ import annotations

import pytest

from harmony_fleet.contracts import Share
from harmony_fleet.errors import ConfigError
from harmony_fleet.sim.config import Fault, SimConfig, parse_label, profiles


def test_a_fault_share_picks_exactly_that_many_devices_the_same_way_every_time() -> None:
    config = SimConfig(
        devices=1000,
        faults={Fault.SELF_TEST: Share(percent=20.0), Fault.OFFLINE: Share(count=7)},
        seed=3,
    )
    first = profiles(config)
    assert sum(Fault.SELF_TEST in p.faults for p in first) == 200
    assert sum(Fault.OFFLINE in p.faults for p in first) == 7
    assert profiles(config) == first
    other_seed = profiles(SimConfig(devices=1000, faults=config.faults, seed=4))
    assert [p.faults for p in other_seed] != [p.faults for p in first]


def test_workers_split_the_devices_and_agree_on_each_one() -> None:
    config = SimConfig(
        devices=10, processes=3, labels=(parse_label("arch=arm64:50%,amd64:50%"),), seed=1
    )
    parts = [profiles(config, config.indexes(p)) for p in range(3)]
    ids = sorted(p.device_id for part in parts for p in part)
    assert ids == [f"sim-{i:05d}" for i in range(10)]
    whole = {p.device_id: p for p in profiles(config)}
    assert all(whole[p.device_id] == p for part in parts for p in part)
    assert {p.labels["arch"] for p in whole.values()} == {"arm64", "amd64"}


def test_upgrade_times_are_fixed_or_drawn_in_the_range() -> None:
    fixed = profiles(SimConfig(devices=5, upgrade_time_s=(3.0, 3.0)))
    assert {p.upgrade_time_s for p in fixed} == {3.0}
    drawn = profiles(SimConfig(devices=50, upgrade_time_s=(2.0, 4.0)))
    assert all(2.0 <= p.upgrade_time_s <= 4.0 for p in drawn)
    assert len({p.upgrade_time_s for p in drawn}) > 1


@pytest.mark.parametrize(
    ("fields", "flag"),
    [
        ({"devices": 0}, "--devices"),
        ({"devices": 5, "id_prefix": "edge-"}, "--id-prefix"),
        ({"devices": 5, "processes": 6}, "--processes"),
        ({"devices": 5, "upgrade_time_s": (4.0, 2.0)}, "--upgrade-time"),
    ],
)
def test_bad_flags_are_named(fields: dict[str, object], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        SimConfig(**fields)  # type: ignore[arg-type]


def test_label_weights_parse_and_bad_ones_are_refused() -> None:
    assert parse_label("arch=arm64:60%,amd64:40%").values == (("arm64", 60.0), ("amd64", 40.0))
    assert parse_label("site=lyon").values == (("lyon", 1.0),)
    for bad in ("arch", "arch=", "arch=a:x", "arch=a:-1"):
        with pytest.raises(ConfigError, match="--label"):
            parse_label(bad)
