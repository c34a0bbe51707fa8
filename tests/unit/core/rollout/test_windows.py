"""Maintenance windows: the text form, open or not (midnight, DST, zones), next opening."""

from __future__ import annotations

import datetime as dt

import pytest

from harmony_fleet.contracts.rollout import MaintenanceWindow
from harmony_fleet.core.rollout.windows import (
    any_open,
    describe,
    first_opening,
    is_open,
    next_opening,
    parse_window,
    zoneinfo_resolver,
)
from harmony_fleet.errors import InvalidMessage

PARIS = zoneinfo_resolver("Europe/Paris")


def _at(tz: dt.tzinfo, y: int, m: int, d: int, hh: int, mm: int = 0) -> float:
    return dt.datetime(y, m, d, hh, mm, tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("text", "days", "start", "end", "zone"),
    [
        ("Mon-Fri 02:00-05:00 Europe/Paris", [0, 1, 2, 3, 4], "02:00", "05:00", "Europe/Paris"),
        ("Sat,Sun 22:00-04:00", [5, 6], "22:00", "04:00", None),
        ("Fri-Mon 00:00-23:59 UTC", [0, 4, 5, 6], "00:00", "23:59", "UTC"),
        ("tue 10:30-11:00", [1], "10:30", "11:00", None),
    ],
)
def test_parse(text: str, days: list[int], start: str, end: str, zone: str | None) -> None:
    window = parse_window(text)
    assert window == MaintenanceWindow(days=days, start=start, end=end, time_zone=zone)
    assert parse_window(describe(window)) == window


@pytest.mark.parametrize(
    "text",
    [
        "Mon-Fri 2:00-5:00",
        "Mon-Fri 02:00-05:00 Mars/Olympus",
        "Funday 02:00-05:00",
        "Mon 25:00-26:00",
        "Mon 02:00-02:00",
        "",
        "Mon 02:00-05:00 Europe/Paris extra",
    ],
)
def test_parse_refuses(text: str) -> None:
    with pytest.raises(InvalidMessage, match="window"):
        parse_window(text)


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        (_at(PARIS, 2026, 12, 7, 2, 0), True),  # Monday 02:00: opens
        (_at(PARIS, 2026, 12, 7, 4, 59), True),
        (_at(PARIS, 2026, 12, 7, 5, 0), False),  # closes at 05:00
        (_at(PARIS, 2026, 12, 7, 1, 59), False),
        (_at(PARIS, 2026, 12, 5, 3, 0), False),  # Saturday
        (_at(dt.UTC, 2026, 12, 7, 1, 30), True),  # 02:30 in Paris (UTC+1 in winter)
        (_at(PARIS, 2026, 7, 6, 2, 30), True),  # summer time: the wall clock counts
    ],
)
def test_is_open_in_the_windows_zone(when: float, open_: bool) -> None:
    window = parse_window("Mon-Fri 02:00-05:00 Europe/Paris")
    assert is_open(window, when, PARIS) is open_


def test_a_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    window = parse_window("Fri 22:00-02:00 UTC")
    assert is_open(window, _at(dt.UTC, 2026, 12, 5, 1, 0), dt.UTC)  # Saturday 01:00
    assert not is_open(window, _at(dt.UTC, 2026, 12, 4, 1, 0), dt.UTC)  # Friday 01:00
    assert next_opening(window, _at(dt.UTC, 2026, 12, 5, 3, 0), dt.UTC) == _at(
        dt.UTC, 2026, 12, 11, 22, 0
    )


def test_next_opening_across_a_dst_change() -> None:
    window = parse_window("Sun 02:30-04:00 Europe/Paris")
    # 2026-03-29 is the night Paris skips 02:00-03:00; the window still opens that Sunday
    after = _at(PARIS, 2026, 3, 28, 12, 0)
    opening = next_opening(window, after, PARIS)
    assert dt.datetime.fromtimestamp(opening, PARIS).date() == dt.date(2026, 3, 29)


def test_no_windows_means_always_and_an_unknown_device_zone_means_utc() -> None:
    window = parse_window("Mon-Sun 02:00-03:00")
    now = _at(dt.UTC, 2026, 12, 7, 2, 30)
    assert any_open([], now, None)
    assert any_open([window], now, "Not/AZone")
    assert not any_open([window], now, "Asia/Tokyo")
    assert first_opening([], now, None) == now
    assert first_opening([window], now, "Asia/Tokyo") == _at(
        zoneinfo_resolver("Asia/Tokyo"), 2026, 12, 8, 2, 0
    )
