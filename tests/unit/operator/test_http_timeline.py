"""The dashboard's timeline and its metrics observer, on a scripted clock (no server)."""

from __future__ import annotations

from collections import Counter

import pytest

from harmony_fleet.contracts import AgentUpgradePhase, Progress, UpgradeSummary
from harmony_fleet.operator.http.timeline import Timeline
from harmony_fleet.operator.http.tokens import bearer, parse_tokens
from harmony_fleet.operator.registry import DeviceState, Registry

P = AgentUpgradePhase


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def summary(phase: P, uid: str = "u1", **kw: object) -> UpgradeSummary:
    return UpgradeSummary(upgrade_id=uid, phase=phase, target_version="2.0.0", **kw)  # type: ignore[arg-type]


def state(device: str, version: str = "1.0.0", online: bool = True) -> DeviceState:
    return DeviceState(device, version, online, 0.0, 0.0, 5.0, {})


def test_phase_changes_make_steps_with_durations_and_progress_does_not() -> None:
    clock = Clock()
    t = Timeline(clock)
    for phase, after in ((P.REQUESTED, 0), (P.STAGING, 1), (P.VERIFYING, 4), (P.SUCCEEDED, 2)):
        clock.now += after
        t.on_upgrade("edge-a", summary(phase))
        if phase is P.STAGING:
            clock.now += 0.5
            t.on_upgrade("edge-a", summary(phase, progress=Progress(bytes_done=10)))
    track = t.latest("edge-a")
    assert track is not None
    shown = track.to_json(clock.now)
    assert [s["phase"] for s in shown["steps"]] == [
        "Requested",
        "Staging",
        "Verifying",
        "Succeeded",
    ]
    assert [s["duration_s"] for s in shown["steps"]] == [1.0, 4.5, 2.0, None]
    assert track.seconds_to("Succeeded") == 7.5
    assert [e.text for e in t.events] == [
        "upgrade to 2.0.0: Requested",
        "upgrade to 2.0.0: Staging",
        "upgrade to 2.0.0: Verifying",
        "upgrade to 2.0.0: Succeeded",
    ]


def test_a_rollback_event_says_why_and_a_new_upgrade_starts_a_new_track() -> None:
    t = Timeline(Clock())
    t.on_upgrade("edge-a", summary(P.REQUESTED))
    t.on_upgrade("edge-a", summary(P.ROLLED_BACK, error_code="cutover_timeout"))
    t.on_upgrade("edge-a", summary(P.REQUESTED, uid="u2"))
    assert "upgrade to 2.0.0: RolledBack (cutover_timeout)" in [e.text for e in t.events]
    assert [tr.upgrade_id for tr in t.upgrades["edge-a"]] == ["u1", "u2"]


def test_scan_reports_changes_after_the_first_look_only() -> None:
    t = Timeline(Clock())
    devices = {"edge-a": state("edge-a")}
    t.scan(devices, Counter())
    assert list(t.events) == []  # the first look announces nothing
    devices["edge-a"] = state("edge-a", "2.0.0", online=False)
    devices["edge-b"] = state("edge-b")
    t.scan(devices, Counter({"not_issued": 3}))
    del devices["edge-b"]
    t.scan(devices, Counter({"not_issued": 3}))
    assert [(e.kind, e.device_id, e.text) for e in t.events] == [
        ("presence", "edge-a", "offline"),
        ("version", "edge-a", "now runs 2.0.0 (was 1.0.0)"),
        ("device", "edge-b", "new device, running 1.0.0"),
        ("security", "", "3 message(s) dropped: not_issued"),
        ("device", "edge-b", "left the registry (identity revoked)"),
    ]


def test_the_registry_tells_upgrade_listeners_only_of_changes() -> None:
    registry = Registry()
    seen: list[tuple[str, UpgradeSummary | None]] = []
    registry.add_upgrade_listener(lambda d, s: seen.append((d, s)))
    registry.devices["edge-a"] = state("edge-a")
    registry.set_upgrade("edge-a", summary(P.STAGING))
    registry.set_upgrade("edge-a", summary(P.STAGING))  # unchanged: not told
    registry.set_upgrade("edge-z", summary(P.STAGING))  # not in the registry
    assert seen == [("edge-a", summary(P.STAGING))]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_tokens_are_read_from_the_authorization_header(
    header: str | None, token: str | None
) -> None:
    assert bearer(header) == token


def test_a_token_file_holds_one_token_a_line_with_comments() -> None:
    long = "x" * 30
    assert parse_tokens(f"# viewers\n\n{long}\n{long}y\n", source="f") == {long, long + "y"}


def test_many_changes_of_one_kind_in_one_scan_make_one_event() -> None:
    t = Timeline(Clock())
    t.scan({}, Counter())
    t.scan({f"edge-{i}": state(f"edge-{i}") for i in range(500)}, Counter())
    assert [(e.kind, e.device_id, e.text) for e in t.events] == [("device", "", "500 devices: new")]
