"""The versioned layout on real folders: atomic swaps, refusals, a byte-identical revert."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import AgentLayout, LayoutBroken

OLD, NEW = "1.0.0", "2.0.0"


def install(layout: AgentLayout, v: str, body: bytes | None = None) -> None:
    home = layout.version_dir(v)
    home.mkdir(parents=True)
    (home / "agent").write_bytes(body or f"#!/bin/sh\necho {v}\n".encode())
    (home / "lib").mkdir()
    (home / "lib" / "data.bin").write_bytes(os.urandom(256))


def tree(root: Path) -> dict[str, str]:
    """Every file's SHA-256 and every symlink's target, by relative path."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture
def layout(tmp_path: Path) -> AgentLayout:
    lay = AgentLayout(tmp_path / "fleet")
    install(lay, OLD)
    install(lay, NEW)
    lay.swap_current(OLD)
    return lay


def test_current_is_a_relative_symlink_into_versions(layout: AgentLayout) -> None:
    assert os.readlink(layout.current_link) == f"versions/{OLD}"
    assert layout.current_version() == OLD
    assert layout.list_versions() == [OLD, NEW]
    layout.swap_current(NEW)
    assert os.readlink(layout.current_link) == f"versions/{NEW}"
    assert (layout.current_link / "agent").read_bytes().endswith(b"2.0.0\n")


def test_swap_never_leaves_current_missing_for_a_concurrent_reader(layout: AgentLayout) -> None:
    stop = threading.Event()
    seen: set[str] = set()
    misses: list[BaseException] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                seen.add(os.readlink(layout.current_link))
                os.stat(layout.current_link)  # follows the link: the target must exist too
                reads += 1
            except OSError as exc:
                misses.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(2000):
            layout.swap_current(NEW if i % 2 == 0 else OLD)
    finally:
        stop.set()
        thread.join()
    assert misses == []
    assert reads > 100, "the reader must really have run alongside the swaps"
    assert seen == {f"versions/{OLD}", f"versions/{NEW}"}
    leftovers = [p.name for p in layout.prefix.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_swap_to_a_version_that_is_not_installed_is_refused(layout: AgentLayout) -> None:
    with pytest.raises(LayoutBroken, match="not installed"):
        layout.swap_current("9.9.9")
    assert layout.current_version() == OLD


def test_a_version_string_cannot_escape_the_prefix(layout: AgentLayout) -> None:
    with pytest.raises(LayoutBroken):
        layout.swap_current("../../etc")


def test_revert_leaves_the_tree_byte_identical(tmp_path: Path) -> None:
    lay = AgentLayout(tmp_path / "fleet")
    install(lay, OLD)
    lay.swap_current(OLD)
    before = tree(lay.prefix)
    # An upgrade stages NEW, starts it, even swaps to it, then is reverted.
    staging = lay.staging_dir(NEW)
    staging.mkdir()
    (staging / "agent").write_bytes(b"new")
    lay.promote_staged(NEW)
    lay.swap_current(NEW)
    lay.staging_dir(NEW).mkdir()  # a leftover of a second attempt
    lay.revert(previous=OLD, target=NEW, target_existed_before=False)
    assert tree(lay.prefix) == before
    lay.revert(previous=OLD, target=NEW, target_existed_before=False)  # idempotent
    assert tree(lay.prefix) == before


def test_revert_keeps_a_target_that_was_installed_before(layout: AgentLayout) -> None:
    before = tree(layout.prefix)
    layout.swap_current(NEW)
    layout.revert(previous=OLD, target=NEW, target_existed_before=True)
    assert tree(layout.prefix) == before


def test_the_current_version_cannot_be_removed(layout: AgentLayout) -> None:
    with pytest.raises(LayoutBroken, match="current points at it"):
        layout.remove_version(OLD)
    assert layout.has_version(OLD)


def test_current_pointing_outside_versions_is_reported(layout: AgentLayout) -> None:
    layout.current_link.unlink()
    layout.current_link.symlink_to("/usr/bin")
    with pytest.raises(LayoutBroken, match="not versions/<v>"):
        layout.current_version()
