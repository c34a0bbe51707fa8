"""Rollout contracts: golden fixtures both ways, bounds on every field, shares and keys."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from harmony_fleet.contracts import (
    DEVICE_PROGRESS,
    ROLLOUT,
    ROLLOUT_STATUS,
    Codec,
    DeviceProgress,
    DeviceState,
    MaintenanceWindow,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    Share,
    encode,
)
from harmony_fleet.contracts.rollout import (
    progress_key,
    rollout_key,
    rollout_name,
    status_key,
)
from harmony_fleet.errors import InvalidMessage

GOLDEN = Path(__file__).parents[2] / "fixtures" / "golden"
SHA = "ab" * 32

SAMPLES: dict[str, tuple[Codec[object], object]] = {
    "rollout": (
        ROLLOUT,
        Rollout(
            name="spring-2",
            version="2.0.0",
            selector={"site": "plant-a"},
            canary=Share(percent=2.0),
            max_in_flight=Share(count=100),
            max_downloads=20,
            spread_s=60.0,
            soak_s=1800.0,
            halt_failure_rate=5.0,
            windows=[
                MaintenanceWindow(
                    days=[0, 1, 2, 3, 4], start="02:00", end="05:00", time_zone="Europe/Paris"
                )
            ],
            deadline=1700604800.0,
            created_by="alice",
            created_at=1700000000.0,
        ),
    ),
    "rollout_status": (
        ROLLOUT_STATUS,
        RolloutStatus(
            name="spring-2",
            phase=RolloutPhase.HALTED,
            wave=3,
            wave_started_at=1700003600.0,
            soak_until=1700001800.0,
            halted_at=1700003900.0,
            halt_reason="wave 3: 12 of 100 devices failed (threshold 5%)",
            halted_devices=[],
            counts={DeviceState.SUCCEEDED: 300, DeviceState.ROLLED_BACK: 12},
            updated_at=1700003900.0,
        ),
    ),
    "device_progress": (
        DEVICE_PROGRESS,
        DeviceProgress(
            rollout="spring-2",
            device_id="edge-01",
            state=DeviceState.SUCCEEDED,
            wave=2,
            previous_version="1.9.0",
            previous_sha256=SHA,
            upgrade_id="r0123456789abcdef0123456789abcd",
            not_before=1700003610.5,
            undo=DeviceState.IN_PROGRESS,
            undo_upgrade_id="ru0123456789abcdef0123456789abc",
            updated_at=1700003700.0,
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_golden_fixture_encodes_and_decodes(name: str) -> None:
    codec, value = SAMPLES[name]
    golden = (GOLDEN / f"{name}.json").read_bytes().strip()
    assert json.loads(encode(value)) == json.loads(golden), "encoding drifted from the fixture"
    assert codec.decode(golden) == value, "the fixture no longer decodes to the value"


def _rollout(**changes: object) -> bytes:
    raw = json.loads(encode(SAMPLES["rollout"][1]))
    raw.update(changes)
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("name", "Spring.2"),
        ("name", "a" * 64),
        ("version", "../x"),
        ("canary", {}),
        ("canary", {"count": 1, "percent": 1.0}),
        ("canary", {"percent": 101.0}),
        ("max_in_flight", {"count": -1}),
        ("max_downloads", 0),
        ("soak_s", -1.0),
        ("soak_s", 1e12),
        ("halt_failure_rate", 150.0),
        ("selector", {f"k{i}": "v" for i in range(33)}),
        ("selector", {"bad key!": "v"}),
        ("strata", ["a"] * 9),
        ("windows", [{"days": [], "start": "02:00", "end": "03:00"}]),
        ("windows", [{"days": [7], "start": "02:00", "end": "03:00"}]),
        ("windows", [{"days": [1], "start": "2:00", "end": "03:00"}]),
        ("windows", [{"days": [1], "start": "02:00", "end": "02:00"}]),
        ("windows", [{"days": [1], "start": "02:00", "end": "03:00", "time_zone": "../etc"}]),
        ("created_by", "x" * 5000),
    ],
)
def test_a_rollout_out_of_bounds_is_refused_naming_the_field(field: str, bad: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        ROLLOUT.decode(_rollout(**{field: bad}))
    assert field in str(info.value)


def test_progress_and_status_bounds() -> None:
    raw = json.loads(encode(SAMPLES["device_progress"][1]))
    for field, bad in [
        ("state", "done"),
        ("reason", "x" * 513),
        ("wave", -1),
        ("device_id", "Edge_01"),
        ("previous_sha256", "zz"),
    ]:
        with pytest.raises(InvalidMessage):
            DEVICE_PROGRESS.decode(json.dumps({**raw, field: bad}).encode())
    status = json.loads(encode(SAMPLES["rollout_status"][1]))
    too_many = [{"device_id": f"d{i}", "state": "failed"} for i in range(101)]
    with pytest.raises(InvalidMessage, match="halted_devices"):
        ROLLOUT_STATUS.decode(json.dumps({**status, "halted_devices": too_many}).encode())


@pytest.mark.parametrize(
    ("text", "share", "of_1000", "of_10"),
    [
        ("5", Share(count=5), 5, 5),
        ("2%", Share(percent=2.0), 20, 1),
        ("0.5%", Share(percent=0.5), 5, 1),
        ("100%", Share(percent=100.0), 1000, 10),
        ("0", Share(count=0), 0, 0),
        ("20", Share(count=20), 20, 10),
    ],
)
def test_share(text: str, share: Share, of_1000: int, of_10: int) -> None:
    assert Share.parse(text) == share
    assert (share.of(1000), share.of(10)) == (of_1000, of_10)
    assert Share.parse(str(share)) == share


@pytest.mark.parametrize("text", ["", "%", "-1", "101%", "1.5", "ten", "5 %x", "2000000"])
def test_share_refuses(text: str) -> None:
    with pytest.raises(InvalidMessage, match="share"):
        Share.parse(text)


def test_a_share_is_a_count_or_a_percent() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Share()
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"count": 1, "percent": 2.0}, Share)


def test_keys_and_names() -> None:
    assert rollout_key("r1") == "r1"
    assert status_key("r1") == "r1"
    assert progress_key("r1", "edge-01") == "r1.edge-01"
    assert progress_key("r1", "edge-01") != progress_key("r1-edge", "01")
    assert rollout_name("spring-2") == "spring-2"
    with pytest.raises(InvalidMessage, match="name"):
        rollout_name("a.b")
