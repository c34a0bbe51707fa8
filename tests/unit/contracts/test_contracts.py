"""Contracts: golden fixtures both ways, strict decoding with errors naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from tests.unit.contracts.test_device_file_contracts import SAMPLES as DEVICE_FILE_SAMPLES
from tests.unit.contracts.test_rollout_contracts import SAMPLES as ROLLOUT_SAMPLES
from tests.unit.logs.test_logs_contract import SAMPLE as LOG_SAMPLE

from harmony_fleet.contracts import (
    COMMAND,
    DEVICE_RECORD,
    HEARTBEAT,
    LOCAL_STATE,
    LOG_LINE,
    MAX_MESSAGE_BYTES,
    REPLY,
    UPGRADE_MARKER,
    UPGRADE_STATUS,
    AgentUpgradePhase,
    Codec,
    Command,
    DeviceRecord,
    ErrorCode,
    Heartbeat,
    InFlight,
    InstanceSeen,
    LocalState,
    Progress,
    Reply,
    ReplyCode,
    Role,
    UpgradeMarker,
    UpgradeState,
    UpgradeStatus,
    UpgradeSummary,
    Verb,
    decode_args,
    encode,
    subjects,
)
from harmony_fleet.contracts import ids as idmod
from harmony_fleet.contracts.identity import DEVICE_IDENTITY, DeviceIdentity
from harmony_fleet.contracts.lease import OPERATOR_LEASE, OperatorLease
from harmony_fleet.contracts.rollout import skip_entry, skip_list
from harmony_fleet.contracts.schema import WIRE_TYPES, export_schemas
from harmony_fleet.errors import InvalidMessage

GOLDEN = Path(__file__).parents[2] / "fixtures" / "golden"
IID = "0123456789abcdef0123456789abcdef"
SHA = "ab" * 32

SAMPLES: dict[str, tuple[Codec[object], object]] = {
    "heartbeat": (
        HEARTBEAT,
        Heartbeat(
            device_id="edge-01",
            instance_id=IID,
            agent_version="1.2.3",
            role=Role.CANDIDATE,
            seq=42,
            sent_at=1700000000.5,
            uptime_s=12.25,
            interval_s=5.0,
            upgrade_id="u-1",
            labels={"site": "plant-a"},
        ),
    ),
    "command": (
        COMMAND,
        Command(
            command_id="c1",
            verb=Verb.UPGRADE_STOP,
            issued_at=1700000000.0,
            expires_at=1700000005.0,
            args={"upgrade_id": "u-1"},
            ttl_s=5.0,
        ),
    ),
    "reply": (
        REPLY,
        Reply(
            command_id="c1",
            ok=False,
            code=ReplyCode.WRONG_UPGRADE,
            message="armed for u-2",
            instance_id=IID,
            agent_version="1.2.3",
        ),
    ),
    "upgrade_marker": (
        UPGRADE_MARKER,
        UpgradeMarker(
            upgrade_id="u-1",
            device_id="edge-01",
            target_version="1.3.0",
            artifact_url="http://artifacts.local/agent-1.3.0.pyz",
            sha256=SHA,
            size=1024,
            requested_at=1700000000.0,
            requested_by="alice",
            lease_epoch=3,
        ),
    ),
    "upgrade_status": (
        UPGRADE_STATUS,
        UpgradeStatus(
            upgrade_id="u-1",
            device_id="edge-01",
            phase=AgentUpgradePhase.ROLLED_BACK,
            from_version="1.2.3",
            to_version="1.3.0",
            instance_id=IID,
            progress=Progress(bytes_done=1024, bytes_total=1024, rate_bps=512.0),
            error_code="candidate_exited",
            error_detail="exit code 3",
            candidate_exit_code=3,
            candidate_log_tail=["boom"],
            started_at=1700000000.0,
            updated_at=1700000010.0,
        ),
    ),
    "operator_lease": (
        OPERATOR_LEASE,
        OperatorLease(holder="ops-a-4242-1a2b3c", epoch=7, ttl_s=10.0, renewed_at=1700000000.5),
    ),
    "device_record": (
        DEVICE_RECORD,
        DeviceRecord(
            lease_epoch=3,
            device_id="edge-01",
            current_version="1.2.3",
            online=True,
            first_seen=1700000000.0,
            last_seen=1700000100.0,
            instances=[
                InstanceSeen(
                    instance_id=IID,
                    agent_version="1.2.3",
                    role=Role.MAIN,
                    first_seen=1700000000.0,
                    last_seen=1700000100.0,
                    last_seq=20,
                )
            ],
            upgrade=UpgradeSummary(
                upgrade_id="u-1", phase=AgentUpgradePhase.STAGING, target_version="1.3.0"
            ),
        ),
    ),
    "log_line": (LOG_LINE, LOG_SAMPLE),
    "device_identity": (
        DEVICE_IDENTITY,
        DeviceIdentity(
            device_id="edge-01",
            users=["U" + "A" * 55],
            issued_at=1700000000.0,
            revoked_at=1700000600.0,
        ),
    ),
    "local_state": (
        LOCAL_STATE,
        LocalState(
            finished=("u-0", "u-1"),
            failed_versions=("1.1.0",),
            in_flight=InFlight(
                marker=UpgradeMarker(
                    upgrade_id="u-1",
                    device_id="edge-01",
                    target_version="1.3.0",
                    artifact_url="http://artifacts.local/agent-1.3.0.pyz",
                    sha256=SHA,
                    requested_at=1700000000.0,
                ),
                from_version="1.2.3",
                state=UpgradeState.WATCHING,
                attempt=2,
                started_at=1700000001.0,
                candidate_instance_id=IID,
                error_code=ErrorCode.CANDIDATE_EXITED,
                error_detail="exit code 3",
                candidate_exit_code=3,
                candidate_log_tail=("boom",),
                committed_at=1700000060.0,
            ),
            previous="1.2.3",
            installed={"1.2.3": SHA, "1.3.0": "cd" * 32},
            version_floor="1.3.0",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_golden_fixture_encodes_and_decodes(name: str) -> None:
    codec, value = SAMPLES[name]
    golden = (GOLDEN / f"{name}.json").read_bytes().strip()
    assert json.loads(encode(value)) == json.loads(golden), "encoding drifted from the fixture"
    assert codec.decode(golden) == value, "the fixture no longer decodes to the value"


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ("edge-07", True),
        ("hardware_model=rpi3", True),
        ("os_release=debian-11", True),
        ("arch=", True),
        ("Edge-07", False),
        ("=rpi3", False),
        ("edge-07\n", False),
        ("", False),
        ("k=" + "v" * 257, False),
    ],
)
def test_a_skip_entry_is_a_device_id_or_a_label_and_value(entry: str, valid: bool) -> None:
    if valid:
        assert skip_entry(entry) == entry
    else:
        with pytest.raises(InvalidMessage, match="skip"):
            skip_entry(entry)
    assert skip_list([entry, 7, None]) == ((entry,) if valid else ())
    assert skip_list("edge-07") == ()


def test_a_command_from_a_sender_older_than_ttl_still_decodes() -> None:
    older = (GOLDEN / "older" / "command_without_ttl.json").read_bytes()
    command = COMMAND.decode(older)
    assert command.ttl_s is None
    assert command == msgspec.structs.replace(SAMPLES["command"][1], ttl_s=None)


@pytest.mark.parametrize("name", ["device_record", "upgrade_marker"])
def test_a_value_written_before_the_operator_lease_decodes_with_epoch_0(name: str) -> None:
    codec, value = SAMPLES[name]
    older = (GOLDEN / "older" / f"{name}_without_lease_epoch.json").read_bytes()
    assert codec.decode(older) == msgspec.structs.replace(value, lease_epoch=0)  # type: ignore[type-var]


def test_every_wire_type_has_a_golden_fixture() -> None:
    assert set(SAMPLES) | set(DEVICE_FILE_SAMPLES) | set(ROLLOUT_SAMPLES) == set(WIRE_TYPES) - {
        "upgrade_stop_args"
    }


def _heartbeat_dict() -> dict[str, object]:
    return json.loads(encode(SAMPLES["heartbeat"][1]))


@pytest.mark.parametrize(
    ("field", "bad", "reason_part"),
    [
        ("device_id", "Edge/01", "regex"),
        ("device_id", "a" * 64, ""),
        ("device_id", "", ""),
        ("agent_version", "1..2", "regex"),
        ("agent_version", "../../etc", "regex"),
        ("agent_version", "1/2", "regex"),
        ("agent_version", "1" * 65, ""),
        ("instance_id", "not-hex", "regex"),
        ("role", "boss", "enum"),
        ("seq", -1, ">= 0"),
        ("seq", "7", "int"),
        ("sent_at", "yesterday", "float"),
        ("upgrade_id", "../x", "regex"),
    ],
)
def test_heartbeat_decode_errors_name_the_field(field: str, bad: object, reason_part: str) -> None:
    data = _heartbeat_dict()
    data[field] = bad
    with pytest.raises(InvalidMessage) as info:
        HEARTBEAT.decode(json.dumps(data).encode())
    assert info.value.field == f"$.{field}"
    assert reason_part in info.value.reason


@pytest.mark.parametrize("field", ["device_id", "instance_id", "agent_version", "role", "seq"])
def test_missing_field_is_named(field: str) -> None:
    data = _heartbeat_dict()
    del data[field]
    with pytest.raises(InvalidMessage) as info:
        HEARTBEAT.decode(json.dumps(data).encode())
    assert info.value.field == f"$.{field}"
    assert "missing" in info.value.reason


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b'{"pad":"' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    with pytest.raises(InvalidMessage) as info:
        HEARTBEAT.decode(payload)
    assert info.value.field == "$"
    assert "exceeds" in info.value.reason


def test_not_json_and_wrong_shape_are_errors_at_the_root() -> None:
    for raw in (b"\xff\xfe", b"not json", b"[1,2]", b""):
        with pytest.raises(InvalidMessage) as info:
            HEARTBEAT.decode(raw)
        assert info.value.field == "$"


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    data = _heartbeat_dict()
    data["added_in_v2"] = {"anything": 1}
    assert HEARTBEAT.decode(json.dumps(data).encode()) == SAMPLES["heartbeat"][1]


def test_unknown_verb_names_the_verb_field() -> None:
    data = json.loads(encode(SAMPLES["command"][1]))
    data["verb"] = "self_destruct"
    with pytest.raises(InvalidMessage) as info:
        COMMAND.decode(json.dumps(data).encode())
    assert info.value.field == "$.verb"


def test_command_args_are_checked_against_the_verb() -> None:
    cmd = Command(
        command_id="c",
        verb=Verb.UPGRADE_STOP,
        issued_at=0,
        expires_at=1,
        args={"upgrade_id": "../../x"},
    )
    with pytest.raises(InvalidMessage) as info:
        decode_args(cmd)
    assert info.value.field == "$.args.upgrade_id"
    missing = msgspec.structs.replace(cmd, args={})
    with pytest.raises(InvalidMessage) as info:
        decode_args(missing)
    assert info.value.field == "$.args.upgrade_id"


def test_validators_for_flags() -> None:
    assert idmod.device_id("edge-01") == "edge-01"
    assert idmod.version("2.0.0+build.1") == "2.0.0+build.1"
    assert idmod.sha256_hex(SHA.upper()) == SHA
    for fn, bad in (
        (idmod.device_id, "EDGE"),
        (idmod.device_id, "-x"),
        (idmod.version, ".."),
        (idmod.version, "a/b"),
        (idmod.sha256_hex, "12"),
        (idmod.upgrade_id, "a b"),
    ):
        with pytest.raises(InvalidMessage):
            fn(bad)


def test_subjects_keep_a_device_under_its_own_prefix() -> None:
    assert subjects.heartbeat("edge-01") == "fleet.edge-01.heartbeat"
    assert subjects.command("edge-01") == "fleet.edge-01.cmd"
    assert subjects.device_scope("edge-01") == "fleet.edge-01.>"
    assert subjects.device_of("fleet.edge-01.heartbeat") == "edge-01"
    assert subjects.device_of("other.edge-01.heartbeat") is None
    assert subjects.device_of("fleet") is None


def test_schema_export_writes_one_valid_schema_per_type(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path)
    assert {p.name for p in paths} == {f"{n}.schema.json" for n in WIRE_TYPES}
    hb = json.loads((tmp_path / "heartbeat.schema.json").read_text())
    props = hb["$defs"]["Heartbeat"]["properties"]
    assert props["device_id"]["pattern"] == idmod.DEVICE_ID_PATTERN
    assert "agent_version" in hb["$defs"]["Heartbeat"]["required"]
    assert sorted(hb["$defs"]["Role"]["enum"]) == ["candidate", "main"]


def test_terminal_phases() -> None:
    assert AgentUpgradePhase.SUCCEEDED.terminal
    assert AgentUpgradePhase.ROLLED_BACK.terminal
    assert AgentUpgradePhase.FAILED.terminal
    assert not AgentUpgradePhase.CUTOVER_READY.terminal


@pytest.mark.parametrize(
    ("field", "good"),
    [
        ("device_id", "edge-01"),
        ("agent_version", "1.2.3"),
        ("instance_id", IID),
        ("upgrade_id", "u-1"),
    ],
)
def test_a_trailing_newline_is_refused_on_decode(field: str, good: str) -> None:
    data = _heartbeat_dict()
    data[field] = good + "\n"
    with pytest.raises(InvalidMessage) as info:
        HEARTBEAT.decode(json.dumps(data).encode())
    assert info.value.field == f"$.{field}"
    data[field] = good
    assert HEARTBEAT.decode(json.dumps(data).encode()) == SAMPLES["heartbeat"][1]


@pytest.mark.parametrize(
    ("fn", "good"),
    [
        (idmod.device_id, "edge-01"),
        (idmod.version, "2.0.0"),
        (idmod.upgrade_id, "u-1"),
    ],
)
def test_validators_refuse_a_trailing_newline(fn: Callable[[str], str], good: str) -> None:
    assert fn(good) == good
    with pytest.raises(InvalidMessage):
        fn(good + "\n")


def test_label_keys_match_whole_strings_too() -> None:
    hb = _heartbeat_dict()
    hb["labels"] = {"site\n": "x"}
    with pytest.raises(InvalidMessage):
        HEARTBEAT.decode(json.dumps(hb).encode())


def test_decoded_ids_carry_their_types_and_schemas_keep_the_patterns(tmp_path: Path) -> None:
    hb = HEARTBEAT.decode(encode(SAMPLES["heartbeat"][1]))
    assert type(hb.instance_id) is str  # a NewType is the plain type at run time
    export_schemas(tmp_path)
    schema = json.loads((tmp_path / "upgrade_marker.schema.json").read_text())
    props = schema["$defs"]["UpgradeMarker"]["properties"]
    assert props["upgrade_id"]["pattern"] == idmod.UPGRADE_ID_PATTERN
    assert props["target_version"]["pattern"] == idmod.VERSION_PATTERN
    assert props["device_id"]["maxLength"] == 63


def test_a_state_file_written_before_it_had_a_version_still_decodes() -> None:
    data = json.loads((GOLDEN / "local_state.json").read_bytes())
    del data["v"]
    assert LOCAL_STATE.decode(json.dumps(data).encode()) == SAMPLES["local_state"][1]
    assert LOCAL_STATE.decode(b"{}") == LocalState()


def test_the_state_file_keeps_the_upgrade_in_hand_flat_beside_its_state() -> None:
    state = SAMPLES["local_state"][1]
    assert isinstance(state, LocalState) and state.in_flight is not None
    record = state.in_flight
    assert record.hand.at(record.state) == record
    flat = json.loads(encode(state))["in_flight"]
    assert flat["state"] == "Watching" and flat["committed_at"] == 1700000060.0
