"""Maintenance windows: parse ``Mon-Fri 02:00-05:00 Europe/Paris``, and tell whether a time is
inside one and when the next one opens.

Time is always an argument (a Unix time); the time zone comes from a :data:`TzResolver`, by
default :class:`zoneinfo.ZoneInfo`, which reads the tz database (immutable data) and no clock.
A window whose end is before its start crosses midnight: ``Fri 22:00-02:00`` is open from Friday
22:00 to Saturday 02:00. Local times that a DST change skips or repeats follow Python's
``fold=0`` rule; a window is evaluated on wall-clock time, as a person reading it would.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from harmony_fleet.contracts.rollout import MaintenanceWindow
from harmony_fleet.errors import InvalidMessage

#: Turns a time zone name into a ``tzinfo``; raises :class:`LookupError` for an unknown name.
TzResolver = Callable[[str], dt.tzinfo]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(
    r"(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?(?:,[A-Za-z]{3}(?:-[A-Za-z]{3})?)*)\s+"
    r"(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)(?:\s+(?P<tz>\S+))?"
)


def zoneinfo_resolver(name: str) -> dt.tzinfo:
    """The default resolver: the system's tz database (``tzdata`` where there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LookupError(f"unknown time zone {name!r}") from exc


def _days(text: str) -> list[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise InvalidMessage("window", f"{part!r} is not a day or a range like Mon-Fri")
        a = DAYS.index(first)
        b = DAYS.index(last) if last else a
        span = (b - a) % 7
        days.update((a + i) % 7 for i in range(span + 1))
    return sorted(days)


def parse_window(text: str, resolve: TzResolver = zoneinfo_resolver) -> MaintenanceWindow:
    """Parse ``'Mon-Fri 02:00-05:00 Europe/Paris'`` (the zone is optional: without one, each
    device's own). Raises :class:`InvalidMessage` naming ``window``."""
    match = _SPEC.fullmatch(text.strip())
    if match is None:
        raise InvalidMessage("window", f"{text!r} is not like 'Mon-Fri 02:00-05:00 Europe/Paris'")
    tz = match["tz"]
    if tz is not None:
        try:
            resolve(tz)
        except LookupError as exc:
            raise InvalidMessage("window", str(exc)) from exc
    try:
        return msgspec.convert(
            {
                "days": _days(match["days"]),
                "start": match["start"],
                "end": match["end"],
                "time_zone": tz,
            },
            MaintenanceWindow,
        )
    except msgspec.ValidationError as exc:
        raise InvalidMessage("window", f"{text!r}: {exc}") from exc


def describe(window: MaintenanceWindow) -> str:
    """The text form :func:`parse_window` reads back."""
    days = ",".join(DAYS[d].capitalize() for d in window.days)
    zone = f" {window.time_zone}" if window.time_zone else ""
    return f"{days} {window.start}-{window.end}{zone}"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _open_intervals(
    window: MaintenanceWindow, day: dt.date, tz: dt.tzinfo
) -> tuple[dt.datetime, dt.datetime] | None:
    """The window opening on ``day`` (local), as aware datetimes, or None on other days."""
    if day.weekday() not in window.days:
        return None
    start, end = _minutes(window.start), _minutes(window.end)
    end_day = day + dt.timedelta(days=1) if end < start else day
    # Wall-clock times: aware datetimes with a zoneinfo tz resolve DST per instant.
    opens = dt.datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=tz)
    closes = dt.datetime(end_day.year, end_day.month, end_day.day, end // 60, end % 60, tzinfo=tz)
    return opens, closes


def zone_of(window: MaintenanceWindow, device_zone: str | None, resolve: TzResolver) -> dt.tzinfo:
    """The window's zone if it names one, else the device's, else UTC (and UTC for a device
    zone the resolver does not know: a device's label must not make the rollout fail)."""
    name = window.time_zone or device_zone
    if not name:
        return dt.UTC
    try:
        return resolve(name)
    except LookupError:
        if window.time_zone:
            raise
        return dt.UTC


def is_open(window: MaintenanceWindow, now: float, tz: dt.tzinfo) -> bool:
    """True when ``now`` is inside ``window`` in ``tz``."""
    local = dt.datetime.fromtimestamp(now, tz)
    for back in (0, 1):  # a window opened yesterday may still be open (crosses midnight)
        interval = _open_intervals(window, local.date() - dt.timedelta(days=back), tz)
        if interval is not None and interval[0].timestamp() <= now < interval[1].timestamp():
            return True
    return False


def next_opening(window: MaintenanceWindow, now: float, tz: dt.tzinfo) -> float:
    """The Unix time at which ``window`` next opens after ``now`` (``now`` if it is open)."""
    if is_open(window, now, tz):
        return now
    today = dt.datetime.fromtimestamp(now, tz).date()
    for ahead in range(8):
        interval = _open_intervals(window, today + dt.timedelta(days=ahead), tz)
        if interval is not None and interval[0].timestamp() > now:
            return interval[0].timestamp()
    raise AssertionError("a window with at least one day opens within 8 days")


def any_open(
    windows: Sequence[MaintenanceWindow],
    now: float,
    device_zone: str | None,
    resolve: TzResolver = zoneinfo_resolver,
) -> bool:
    """True when there are no windows, or ``now`` is inside one of them for this device."""
    if not windows:
        return True
    return any(is_open(w, now, zone_of(w, device_zone, resolve)) for w in windows)


def first_opening(
    windows: Sequence[MaintenanceWindow],
    now: float,
    device_zone: str | None,
    resolve: TzResolver = zoneinfo_resolver,
) -> float:
    """The earliest time one of ``windows`` is open for this device (``now`` with none)."""
    if not windows:
        return now
    return min(next_opening(w, now, zone_of(w, device_zone, resolve)) for w in windows)
