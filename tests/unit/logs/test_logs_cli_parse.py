"""``fleet logs`` input and output: --since forms, --instance prefixes, the text rendering."""

from __future__ import annotations

import datetime as dt

import click
import pytest

from harmony_fleet.cli.logs import _instance, parse_since, render
from harmony_fleet.contracts import LogLevel, LogLine, Role

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "ago"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5)],
)
def test_durations_count_back_from_now(text: str, ago: float) -> None:
    assert parse_since(text, now=NOW) == pytest.approx(NOW - ago)


def test_timestamps() -> None:
    assert parse_since("1700000000", now=NOW) == 1700000000.0
    assert parse_since("2023-11-14T22:13:20Z", now=NOW) == 1700000000.0
    assert parse_since("2023-11-14T23:13:20+01:00", now=NOW) == 1700000000.0
    local = dt.datetime(2023, 11, 14, 22, 13, 20).timestamp()
    assert parse_since("2023-11-14 22:13:20", now=NOW) == local


@pytest.mark.parametrize("bad", ["", "yesterday", "10x", "m10", "2023-13-01"])
def test_bad_since_is_a_usage_error(bad: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_since(bad, now=NOW)


def test_instance_prefixes() -> None:
    assert _instance("0123ABCD") == "0123abcd"
    assert _instance(None) is None
    for bad in ("012", "xyz0", "0" * 33):
        with pytest.raises(click.BadParameter):
            _instance(bad)


def test_render_shows_source_role_instance_level_fields_and_truncation() -> None:
    line = LogLine(
        device_id="edge-01",
        instance_id="0123456789abcdef0123456789abcdef",
        agent_version="1.0",
        role=Role.CANDIDATE,
        source="unit.nginx",
        seq=1,
        ts=NOW + 0.25,
        level=LogLevel.ERROR,
        logger="nginx",
        msg="disk full",
        fields={"pid": 42},
        truncated=True,
    )
    text = render(line)
    assert text.endswith(
        "unit.nginx candidate/01234567 error    nginx: disk full pid=42 [truncated]"
    )
    assert ".250 " in text
