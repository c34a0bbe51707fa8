"""LogLine: golden fixture both ways, strict decoding of every bounded field, source names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harmony_fleet.contracts import LOG_LINE, LogLevel, LogLine, Role, encode
from harmony_fleet.contracts import logs as contract
from harmony_fleet.contracts.schema import WIRE_TYPES, schema_of
from harmony_fleet.errors import InvalidMessage

GOLDEN = Path(__file__).parents[2] / "fixtures" / "golden" / "log_line.json"
IID = "0123456789abcdef0123456789abcdef"

SAMPLE = LogLine(
    device_id="edge-01",
    instance_id=IID,
    agent_version="1.3.0",
    role=Role.CANDIDATE,
    source="agent",
    seq=7,
    ts=1700000000.25,
    level=LogLevel.ERROR,
    logger="harmony_fleet.agent",
    msg="cannot open state dir" + contract.TRUNCATION_MARKER,
    fields={
        "path": "/var/lib/harmony-fleet/edge-01",
        "errno": 13,
        "fatal": True,
        "ratio": 0.5,
        "hint": None,
    },
    truncated=True,
    upgrade_id="u-1",
)


def test_golden_fixture_encodes_and_decodes() -> None:
    golden = GOLDEN.read_bytes().strip()
    assert json.loads(encode(SAMPLE)) == json.loads(golden), "encoding drifted from the fixture"
    assert LOG_LINE.decode(golden) == SAMPLE, "the fixture no longer decodes to the value"


def test_schema_is_exported_with_the_other_wire_types() -> None:
    assert WIRE_TYPES["log_line"] is LogLine
    schema = schema_of(LogLine)
    assert schema["title"] == "LogLine"
    assert "source" in json.dumps(schema)


def _sample() -> dict[str, object]:
    return json.loads(encode(SAMPLE))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("source", "agent.x"),
        ("source", "unit."),
        ("source", "unit.a.b"),
        ("source", "unit.*"),
        ("level", "loud"),
        ("seq", -1),
        ("ts", -5.0),
        ("msg", "x" * (contract.MAX_MSG_BYTES + len(contract.TRUNCATION_MARKER) + 1)),
        ("logger", "l" * 129),
        ("fields", {"bad key": 1}),
        ("fields", {"nested": {"a": 1}}),
        ("fields", {"list": [1, 2]}),
        ("fields", {"long": "v" * (contract.MAX_FIELD_CHARS + 20)}),
        ("fields", {f"k{i}": i for i in range(contract.MAX_FIELDS + 1)}),
        ("instance_id", "nope"),
        ("role", "boss"),
    ],
)
def test_out_of_bounds_fields_are_refused_and_named(field: str, bad: object) -> None:
    data = _sample()
    data[field] = bad
    with pytest.raises(InvalidMessage) as info:
        LOG_LINE.decode(json.dumps(data).encode())
    assert f"$.{field}" in str(info.value)  # map keys: msgspec says "at `key` in `$.fields`"


def test_oversized_payload_is_refused_before_parsing() -> None:
    data = _sample()
    data["pad"] = "x" * contract.LOG_LINE_MAX_BYTES  # unknown field: only the size is wrong
    with pytest.raises(InvalidMessage) as info:
        LOG_LINE.decode(json.dumps(data).encode())
    assert info.value.field == "$"
    assert "exceeds" in info.value.reason


@pytest.mark.parametrize(
    ("unit", "source"),
    [
        ("nginx.service", "unit.nginx"),
        ("nginx", "unit.nginx"),
        ("getty@tty1.service", "unit.getty_tty1"),
        ("foo.bar.timer", "unit.foo_bar_timer"),
        ("a b*>c", "unit.a_b_c"),
    ],
)
def test_unit_names_become_one_subject_token(unit: str, source: str) -> None:
    assert contract.unit_source(unit) == source
    assert contract.source(unit) == source
    subject = contract.log_subject("edge-01", source)
    assert subject == f"fleet.edge-01.logs.{source}"
    assert len(subject.split(".")) == 5


def test_source_accepts_its_own_names_and_refuses_empty_units() -> None:
    assert contract.source("agent") == "agent"
    assert contract.source("unit.nginx") == "unit.nginx"
    with pytest.raises(InvalidMessage):
        contract.unit_source("...")
