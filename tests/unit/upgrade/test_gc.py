"""Garbage collection of old versions on real folders: the running and the previous version are
never removed, whatever the count; neither is a version an upgrade is working on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import AgentLayout, LayoutBroken

VERSIONS = ("1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0")


def install(layout: AgentLayout, v: str, *, age_s: float) -> None:
    home = layout.version_dir(v)
    (home / ".harmony-fleet-agent-x").mkdir(parents=True)
    (home / "agent").write_bytes(f"#!/bin/sh\necho {v}\n".encode())
    (home / ".harmony-fleet-agent-x" / "lib.py").write_text("x = 1\n")
    then = 1_700_000_000.0 - age_s
    os.utime(home, (then, then))


@pytest.fixture
def layout(tmp_path: Path) -> AgentLayout:
    """Five versions, installed in order (1.0.0 the oldest); current = 5.0.0."""
    lay = AgentLayout(tmp_path / "opt")
    for i, v in enumerate(VERSIONS):
        install(lay, v, age_s=1000.0 - 100 * i)
    lay.swap_current("5.0.0")
    return lay


def test_keeps_the_running_and_the_previous_removes_the_rest(layout: AgentLayout) -> None:
    removed = layout.collect_garbage(protect={"5.0.0", "4.0.0"}, keep=2)
    assert sorted(removed) == ["1.0.0", "2.0.0", "3.0.0"]
    assert layout.list_versions() == ["4.0.0", "5.0.0"]
    assert layout.current_version() == "5.0.0"
    assert (layout.current_link / "agent").is_file()


def test_the_previous_is_kept_even_when_it_is_the_oldest(layout: AgentLayout) -> None:
    removed = layout.collect_garbage(protect={"5.0.0", "1.0.0"}, keep=2)
    assert sorted(removed) == ["2.0.0", "3.0.0", "4.0.0"]
    assert layout.list_versions() == ["1.0.0", "5.0.0"]


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_a_small_count_never_removes_the_running_or_the_previous(
    layout: AgentLayout, keep: int
) -> None:
    layout.collect_garbage(protect={"3.0.0"}, keep=keep)  # 3.0.0: the previous of current 5
    assert layout.list_versions() == ["3.0.0", "5.0.0"]


def test_current_is_kept_even_if_nobody_protects_it(layout: AgentLayout) -> None:
    layout.collect_garbage(protect=set(), keep=0)
    assert layout.list_versions() == ["5.0.0"]


def test_a_larger_count_keeps_the_most_recently_installed_others(layout: AgentLayout) -> None:
    removed = layout.collect_garbage(protect={"5.0.0", "4.0.0"}, keep=3)
    assert sorted(removed) == ["1.0.0", "2.0.0"]
    assert layout.list_versions() == ["3.0.0", "4.0.0", "5.0.0"]


def test_a_version_an_upgrade_is_working_on_is_never_removed(layout: AgentLayout) -> None:
    """Safe at any time: a staged version (owner note) and a download in progress stay."""
    layout.owner_note("2.0.0").write_text("u-in-flight")
    staging = layout.staging_dir("6.0.0")
    staging.mkdir()
    (staging / "agent").write_bytes(b"partial")
    removed = layout.collect_garbage(protect={"5.0.0", "4.0.0"}, keep=2)
    assert sorted(removed) == ["1.0.0", "3.0.0"]
    assert layout.has_version("2.0.0") and (staging / "agent").read_bytes() == b"partial"


def test_collection_is_idempotent(layout: AgentLayout) -> None:
    layout.collect_garbage(protect={"5.0.0", "4.0.0"}, keep=2)
    assert layout.collect_garbage(protect={"5.0.0", "4.0.0"}, keep=2) == []
    assert layout.list_versions() == ["4.0.0", "5.0.0"]


def test_the_version_current_names_can_never_be_removed_directly(layout: AgentLayout) -> None:
    with pytest.raises(LayoutBroken):
        layout.remove_version("5.0.0")
