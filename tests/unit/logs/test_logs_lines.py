"""Bounding a captured line: whatever goes in, what comes out decodes and fits the limit."""

from __future__ import annotations

import logging

import pytest

from harmony_fleet.agent.logs.lines import Identity, Pending, build_line, cut_bytes, level_of
from harmony_fleet.contracts import LOG_LINE, LogLevel, Role
from harmony_fleet.contracts import logs as contract

WHO = Identity(
    device_id="edge-01",
    instance_id="0123456789abcdef0123456789abcdef",
    agent_version="1.2.3",
    role=Role.CANDIDATE,
    upgrade_id="u-1",
)


def pending(msg: str = "hello", fields: dict[str, object] | None = None) -> Pending:
    return Pending("agent", 1, 1700000000.0, LogLevel.INFO, "harmony_fleet.x", msg, fields)


def roundtrip(p: Pending) -> tuple[object, bytes]:
    line, data = build_line(WHO, p)
    assert len(data) <= contract.LOG_LINE_MAX_BYTES
    assert LOG_LINE.decode(data) == line, "a shipped line must decode on the other side"
    return line, data


def test_a_plain_line_keeps_everything() -> None:
    line, _ = roundtrip(pending("hello", {"a": 1, "b": "x"}))
    assert line.msg == "hello"  # type: ignore[attr-defined]
    assert line.fields == {"a": 1, "b": "x"}  # type: ignore[attr-defined]
    assert not line.truncated  # type: ignore[attr-defined]
    assert line.role is Role.CANDIDATE and line.upgrade_id == "u-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_long_messages_are_cut_on_a_character_boundary_with_a_marker(char: str) -> None:
    line, _ = roundtrip(pending(char * (contract.MAX_MSG_BYTES * 2)))
    assert line.truncated  # type: ignore[attr-defined]
    assert line.msg.endswith(contract.TRUNCATION_MARKER)  # type: ignore[attr-defined]
    body = line.msg.removesuffix(contract.TRUNCATION_MARKER)  # type: ignore[attr-defined]
    assert set(body) == {char}
    assert len(body.encode()) <= contract.MAX_MSG_BYTES


def test_fields_are_made_valid_and_bounded() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    fields: dict[str, object] = {
        "bad key!": 1,
        "9lives": 2,
        "nested": {"a": [1, 2]},
        "huge": 2**70,
        "odd": Odd(),
        "broken": Broken(),
        "long": "v" * 1000,
    }
    line, _ = roundtrip(pending(fields=fields))
    out = line.fields  # type: ignore[attr-defined]
    assert out["bad_key_"] == 1
    assert out["_9lives"] == 2
    assert out["nested"] == "{'a': [1, 2]}"
    assert out["huge"] == str(2**70)
    assert out["odd"] == "odd!"
    assert out["broken"] == "<unprintable Broken>"
    assert out["long"].endswith(contract.TRUNCATION_MARKER)
    assert line.truncated  # type: ignore[attr-defined]


def test_too_many_fields_keeps_the_first_ones_and_says_so() -> None:
    line, _ = roundtrip(pending(fields={f"k{i}": i for i in range(100)}))
    assert len(line.fields) == contract.MAX_FIELDS  # type: ignore[attr-defined]
    assert line.truncated  # type: ignore[attr-defined]


def test_escaping_that_would_overflow_the_limit_is_shrunk() -> None:
    # Control characters encode as \u00XX: six bytes each on the wire.
    line, data = roundtrip(pending("\x01" * contract.MAX_MSG_BYTES, {"k": "\x02" * 200}))
    assert line.truncated  # type: ignore[attr-defined]
    assert len(data) <= contract.LOG_LINE_MAX_BYTES


def test_lone_surrogates_do_not_lose_the_line() -> None:
    line, _ = roundtrip(pending("bad \udc80 bytes", {"f": "\udcff"}))
    assert line.msg.startswith("bad ")  # type: ignore[attr-defined]


def test_cut_bytes_leaves_short_text_alone() -> None:
    assert cut_bytes("short", 100) == ("short", False)


@pytest.mark.parametrize(
    ("levelno", "level"),
    [
        (logging.DEBUG, LogLevel.DEBUG),
        (5, LogLevel.DEBUG),
        (logging.INFO, LogLevel.INFO),
        (25, LogLevel.INFO),
        (logging.WARNING, LogLevel.WARNING),
        (logging.ERROR, LogLevel.ERROR),
        (logging.CRITICAL, LogLevel.CRITICAL),
        (60, LogLevel.CRITICAL),
    ],
)
def test_levels(levelno: int, level: LogLevel) -> None:
    assert level_of(levelno) is level
