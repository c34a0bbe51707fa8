"""Finding the CLI's fleet context when the home it would be in cannot be looked into."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.context import Context


def test_a_home_that_cannot_be_looked_into_means_no_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandboxed agent's unit hides ``/root`` (``ProtectHome=``): stat-ing the default
    context there fails with EACCES, which must read as "no context", not end the agent. Root
    cannot be refused a stat here, so an over-long name stands in for it (also an ``OSError``
    that ``Path.exists`` does not swallow)."""
    monkeypatch.delenv("FLEET_CONTEXT", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ("x" * 300)))
    assert Context.find() is None
