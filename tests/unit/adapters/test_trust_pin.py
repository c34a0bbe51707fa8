"""Pinning the trust root in the device's state dir (``fleet agent install --trust-root``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.adapters.tuf.pin import pin_root, pinned_root
from harmony_fleet.errors import ConfigError


def test_the_same_root_again_keeps_what_the_device_followed_since(tmp_path: Path) -> None:
    given = tmp_path / "root.json"
    given.write_bytes(b'{"signed": 1}')
    state = tmp_path / "state"
    assert pin_root(state, given) == pinned_root(state)
    followed = state / "tuf" / "metadata" / "root_history" / "2.root.json"
    followed.parent.mkdir(parents=True)
    followed.write_bytes(b"{}")
    pin_root(state, given)  # a candidate or a restart with the same flag
    assert followed.is_file()
    other = tmp_path / "other-root.json"
    other.write_bytes(b'{"signed": 2}')
    pin_root(state, other)  # a re-install with another root starts the chain again
    assert pinned_root(state).read_bytes() == b'{"signed": 2}'
    assert not followed.exists()


def test_an_unreadable_root_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--trust-root"):
        pin_root(tmp_path / "state", tmp_path / "missing.json")
