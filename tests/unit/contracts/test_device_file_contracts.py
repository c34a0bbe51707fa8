"""The device's cross-process files as contracts: golden fixtures both ways, files written
before they had a ``v`` still decode (as version 1), and an older reader ignores what a newer
writer added. The watch notes cross versions by design: a launcher pinned at install time reads
what every later agent writes, and the agent reads what the launcher wrote."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from harmony_fleet.contracts import Codec, encode
from harmony_fleet.contracts.artifact_manifest import MANIFEST, ArtifactManifest
from harmony_fleet.contracts.device_files import (
    DEVICE_FILES_V,
    FAILURE_COUNT,
    PID_RECORD,
    ROLLBACK_NOTE,
    WATCH_NOTE,
    FailureCount,
    PidRecord,
    RollbackNote,
    WatchNote,
    WatchReason,
)
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.errors import InvalidMessage

GOLDEN = Path(__file__).parents[2] / "fixtures" / "golden"
SHA = "ab" * 32
U1, OLD, NEW = UpgradeId("u-2024-01"), Version("1.4.0"), Version("1.5.0")

SAMPLES: dict[str, tuple[Codec[object], object]] = {
    "watch_note": (
        WATCH_NOTE,
        WatchNote(
            upgrade_id=U1,
            previous=OLD,
            target=NEW,
            committed_at=1700000000.0,
            window_s=600.0,
            max_failures=3,
            stale_after_s=20.0,
            start_grace_s=30.0,
            committed_mono=12345.5,
            boot_id="0f6e8a2c-3b1d-4e5f-9a7b-8c6d5e4f3a2b",
        ),
    ),
    "rollback_note": (
        ROLLBACK_NOTE,
        RollbackNote(
            upgrade_id=U1,
            previous=OLD,
            target=NEW,
            reason=WatchReason.CRASH_LOOP,
            detail="1.5.0 failed 3 times within 9 s of the commit (exit codes 3, 3, None)",
            exit_codes=(3, 3, None),
            log_tail=("Traceback (most recent call last):", "RuntimeError: boom"),
            rolled_back_at=1700000009.0,
        ),
    ),
    "failure_count": (FAILURE_COUNT, FailureCount(upgrade_id=U1, exit_codes=(3, None))),
    "pid_record": (
        PID_RECORD,
        PidRecord(
            pid=4242,
            start_time=987654,
            version=NEW,
            upgrade_id=U1,
            started_at=1700000001.5,
        ),
    ),
    "artifact_manifest": (
        MANIFEST,
        ArtifactManifest(
            name="harmony-fleet-agent",
            version="1.5.0",
            file="harmony-fleet-agent-1.5.0.pyz",
            sha256=SHA,
            size=1234567,
            python_requires=">=3.11,<3.12",
            platform="linux-x86_64",
            wheel_tags=("cp311-cp311-manylinux_2_17_x86_64",),
            entry="harmony_fleet.cli.entry:main",
            faults=(),
            dependencies=("click==8.1.7", "msgspec==0.18.6"),
            payload_digest="cd" * 32,
            built_at="2024-01-01T00:00:00Z",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_golden_fixture_encodes_and_decodes(name: str) -> None:
    codec, value = SAMPLES[name]
    golden = (GOLDEN / f"{name}.json").read_bytes().strip()
    assert json.loads(encode(value)) == json.loads(golden), "encoding drifted from the fixture"
    assert codec.decode(golden) == value, "the fixture no longer decodes to the value"
    assert json.loads(golden)["v"] == DEVICE_FILES_V


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_file_written_before_it_had_a_version_decodes_as_version_1(name: str) -> None:
    codec, value = SAMPLES[name]
    data = json.loads((GOLDEN / f"{name}.json").read_bytes())
    del data["v"]
    decoded = codec.decode(json.dumps(data).encode())
    assert decoded == value and decoded.v == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_an_older_reader_ignores_what_a_newer_writer_added(name: str) -> None:
    codec, value = SAMPLES[name]
    data = {**json.loads(encode(value)), "added_in_a_later_version": {"x": 1}}
    assert codec.decode(json.dumps(data).encode()) == value


def test_an_older_agents_watch_note_decodes_without_the_monotonic_commit_time() -> None:
    """What an agent from before the monotonic commit time wrote: no v, no committed_mono, no
    boot_id. The window is then watched whole (``elapsed`` unknown), never cut short."""
    old = {
        "upgrade_id": U1,
        "previous": OLD,
        "target": NEW,
        "committed_at": 1700000000.0,
        "window_s": 600.0,
        "max_failures": 3,
        "stale_after_s": 20.0,
    }
    note = WATCH_NOTE.decode(json.dumps(old).encode())
    assert note.v == 1 and note.start_grace_s == 30.0 and note.committed_mono is None
    assert note.elapsed(mono=1e9, boot_id="any") is None


def test_the_old_pid_file_shapes_both_decode() -> None:
    """The supervisor's main.pid and the runner's candidate pid file had two shapes: one now."""
    main = PID_RECORD.decode(b'{"pid": 10, "start_time": 20, "version": "1.4.0"}')
    candidate = PID_RECORD.decode(
        b'{"pid": 11, "start_time": 21, "upgrade_id": "u1", "version": "1.5.0",'
        b' "started_at": 1700000000.0}'
    )
    assert (main.pid, main.start_time, main.upgrade_id) == (10, 20, None)
    assert (candidate.pid, candidate.upgrade_id) == (11, "u1")


@pytest.mark.parametrize(
    ("codec", "data", "field"),
    [
        (WATCH_NOTE, {"upgrade_id": "../x", "previous": "1", "target": "2"}, "$.upgrade_id"),
        (PID_RECORD, {"pid": 0, "start_time": 1}, "$.pid"),
        (ROLLBACK_NOTE, {"upgrade_id": "u1", "previous": "1", "target": "2"}, "$.reason"),
    ],
)
def test_a_bad_file_is_refused_naming_the_field(
    codec: Codec[object], data: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        codec.decode(json.dumps(data).encode())
    assert caught.value.field == field


def test_notes_are_frozen_values() -> None:
    note = SAMPLES["failure_count"][1]
    assert isinstance(note, FailureCount)
    assert note.add(1).exit_codes == (3, None, 1) and note.exit_codes == (3, None)
    with pytest.raises(AttributeError):
        note.upgrade_id = UpgradeId("other")  # type: ignore[misc]
    assert msgspec.structs.replace(note, exit_codes=()).exit_codes == ()
