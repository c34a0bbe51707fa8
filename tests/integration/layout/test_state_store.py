"""The local state file on a real folder: round trip, torn writes, corruption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import DiskError, FileStateStore
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade.records import InFlight, LocalState
from harmony_fleet.core.upgrade.states import ErrorCode, UpgradeState

STATE = LocalState(
    finished=(UpgradeId("u0"),),
    failed_versions=(Version("0.9.0"),),
    in_flight=InFlight(
        marker=UpgradeMarker(
            upgrade_id="u1",
            device_id="dev-1",
            target_version="2.0.0",
            artifact_url="http://a.test/x",
            sha256="0" * 64,
            requested_at=1.0,
        ),
        from_version=Version("1.0.0"),
        state=UpgradeState.ROLLING_BACK,
        error_code=ErrorCode.CANDIDATE_EXITED,
        candidate_exit_code=3,
        candidate_log_tail=("boom",),
    ),
)


def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert FileStateStore(tmp_path / "state.json").load() == LocalState()


def test_round_trip(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "sub" / "state.json")
    store.save(STATE)
    assert FileStateStore(store.path).load() == STATE


def test_a_torn_write_leaves_the_previous_state_and_is_cleaned(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    store.save(STATE)
    torn = tmp_path / ".state.json.tmp-999-dead"
    torn.write_bytes(b'{"finished": ["u0", "u')  # the process died mid-write, before rename
    assert store.load() == STATE
    assert not torn.exists()


def test_a_failed_rename_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStateStore(tmp_path / "state.json")
    store.save(STATE)

    def broken(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(DiskError, match="No space left"):
        store.save(LocalState())
    monkeypatch.undo()
    assert store.load() == STATE
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_corrupt_file_is_moved_aside_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"\x00garbage")
    assert FileStateStore(path).load() == LocalState()
    assert not path.exists()
    assert any(p.name.startswith("state.json.corrupt-") for p in tmp_path.iterdir())
