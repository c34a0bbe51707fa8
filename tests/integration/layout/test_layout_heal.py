"""Self-heal from what older or interrupted installs leave, on real folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import AgentLayout, LayoutBroken

OLD = "1.0.0"
BODY = b"#!/bin/sh\necho first install\n"


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    p = tmp_path / "fleet"
    p.mkdir()
    return p


def test_a_plain_agent_file_is_adopted_without_a_gap(prefix: Path) -> None:
    legacy = prefix / "agent"
    legacy.write_bytes(BODY)
    legacy.chmod(0o755)
    inode = legacy.stat().st_ino
    layout = AgentLayout(prefix)
    assert layout.self_heal(OLD) == OLD
    assert layout.current_version() == OLD
    adopted = layout.version_dir(OLD) / "agent"
    assert adopted.read_bytes() == BODY and adopted.stat().st_ino == inode  # the same file
    assert os.access(adopted, os.X_OK)
    assert legacy.is_symlink() and os.readlink(legacy) == "current/agent"
    assert legacy.read_bytes() == BODY  # the old ExecStart path still starts the agent
    assert layout.self_heal(OLD) == OLD  # idempotent


def test_a_real_current_folder_is_moved_into_versions(prefix: Path) -> None:
    (prefix / "current").mkdir()
    (prefix / "current" / "agent").write_bytes(BODY)
    layout = AgentLayout(prefix)
    assert layout.self_heal(OLD) == OLD
    assert layout.current_link.is_symlink()
    assert (layout.version_dir(OLD) / "agent").read_bytes() == BODY


def test_an_interrupted_heal_is_completed(prefix: Path) -> None:
    layout = AgentLayout(prefix)
    layout.version_dir(OLD).mkdir(parents=True)
    (layout.version_dir(OLD) / "agent").write_bytes(BODY)  # moved, but current never made
    assert layout.self_heal(OLD) == OLD
    assert layout.current_version() == OLD


def test_a_dangling_current_points_back_at_the_running_version(prefix: Path) -> None:
    layout = AgentLayout(prefix)
    layout.version_dir(OLD).mkdir(parents=True)
    layout.current_link.symlink_to("versions/2.0.0")
    assert layout.self_heal(OLD) == OLD
    assert layout.current_version() == OLD


def test_a_healthy_layout_is_left_alone(prefix: Path) -> None:
    layout = AgentLayout(prefix)
    layout.version_dir("2.0.0").mkdir(parents=True)
    layout.swap_current("2.0.0")
    assert layout.self_heal(OLD) == "2.0.0"


@pytest.mark.parametrize("shape", ["nothing", "file-current", "both"])
def test_unrepairable_shapes_are_named(prefix: Path, shape: str) -> None:
    layout = AgentLayout(prefix)
    if shape == "file-current":
        layout.current_link.write_bytes(b"?")
    if shape == "both":
        layout.current_link.mkdir()
        layout.version_dir(OLD).mkdir(parents=True)
    with pytest.raises(LayoutBroken) as info:
        layout.self_heal(OLD)
    assert str(prefix) in str(info.value)
