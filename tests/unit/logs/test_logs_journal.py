"""journalctl -o json lines: what is used, and what is skipped and counted as malformed."""

from __future__ import annotations

import json

import pytest

from harmony_fleet.agent.logs.buffer import DropReason, LogBuffer
from harmony_fleet.agent.logs.journal import JournalReader, parse_entry
from harmony_fleet.contracts import LogLevel


def entry(**over: object) -> bytes:
    base: dict[str, object] = {
        "__REALTIME_TIMESTAMP": "1700000000250000",
        "PRIORITY": "3",
        "MESSAGE": "disk full",
        "SYSLOG_IDENTIFIER": "nginx",
        "_SYSTEMD_UNIT": "nginx.service",
        "_PID": "42",
    }
    base.update(over)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode() + b"\n"


def test_a_journal_entry_becomes_a_line() -> None:
    got = parse_entry(entry(), "nginx.service")
    assert got is not None
    assert got.ts == 1700000000.25
    assert got.level is LogLevel.ERROR
    assert got.logger == "nginx"
    assert got.msg == "disk full"
    assert got.fields == {"unit": "nginx.service", "pid": 42}


def test_binary_messages_are_decoded_with_replacement() -> None:
    got = parse_entry(entry(MESSAGE=[104, 105, 255]), "u")
    assert got is not None and got.msg == "hi\ufffd"


@pytest.mark.parametrize(
    ("priority", "level"),
    [("0", LogLevel.CRITICAL), ("4", LogLevel.WARNING), ("6", LogLevel.INFO), ("7", "debug")],
)
def test_priorities(priority: str, level: str) -> None:
    got = parse_entry(entry(PRIORITY=priority), "u")
    assert got is not None and got.level == level


def test_missing_timestamp_and_identifier_have_fallbacks() -> None:
    got = parse_entry(entry(__REALTIME_TIMESTAMP="soon", SYSLOG_IDENTIFIER=None), "x.service")
    assert got is not None and got.ts > 1.7e9 and got.logger == "x.service"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'"just a string"\n',
        entry(MESSAGE=None),
        entry(MESSAGE={"a": 1}),
        entry(MESSAGE=[1, 999]),
        b'{"MESSAGE": "unterminated\n',
    ],
)
def test_malformed_input_is_skipped_and_counted(raw: bytes) -> None:
    assert parse_entry(raw, "u") is None
    buf = LogBuffer(capacity=10, rate=0)
    reader = JournalReader("u.service", buf)
    reader.feed(raw)
    reader.feed(entry())
    assert reader.malformed == 1 and reader.lines == 1
    assert buf.snapshot()[DropReason.MALFORMED] == 1
    assert [p.source for p in buf.take(10)] == ["unit.u"]


def test_the_journalctl_command_starts_at_the_end_and_follows_one_unit() -> None:
    reader = JournalReader("nginx.service", LogBuffer())
    argv = reader.argv("/bin/journalctl")
    assert argv[0] == "/bin/journalctl"
    assert {"--follow", "--output=json", "--lines=0"} <= set(argv)
    assert argv[argv.index("--unit") + 1] == "nginx.service"
