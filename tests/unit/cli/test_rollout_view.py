"""`fleet rollout status --watch` draws one progress bar per wave, the canaries first."""

from __future__ import annotations

import pytest
from rich.console import Console

from harmony_fleet.cli.rollout import _waves, duration
from harmony_fleet.contracts import (
    DeviceProgress,
    DeviceState,
    Rollout,
    RolloutPhase,
    RolloutStatus,
)
from harmony_fleet.errors import ConfigError


def test_one_bar_per_wave_with_done_failed_and_in_progress() -> None:
    states = [
        DeviceState.SUCCEEDED,
        DeviceState.SUCCEEDED,
        DeviceState.ROLLED_BACK,
        DeviceState.IN_PROGRESS,
        DeviceState.IN_PROGRESS,
    ]
    row = {
        "rollout": Rollout(name="spring", version="2.0.0", created_at=1.0),
        "status": RolloutStatus(
            name="spring", phase=RolloutPhase.WAVES, wave=1, counts={DeviceState.SUCCEEDED: 2}
        ),
        "devices": [
            DeviceProgress(rollout="spring", device_id=f"d{i}", state=state, wave=0 if i < 2 else 1)
            for i, state in enumerate(states)
        ],
    }
    console = Console(width=100, record=True)
    console.print(_waves(row))
    lines = console.export_text().splitlines()
    canary = next(line for line in lines if line.strip().startswith("canary"))
    wave1 = next(line for line in lines if line.strip().startswith("1 "))
    assert canary.split()[-3:] == ["2/2", "0", "0"]
    assert wave1.split()[-3:] == ["1/3", "1", "2"]
    assert any("spring: Waves" in line for line in lines)


def test_an_undo_gets_its_own_bar_and_counts() -> None:
    S = DeviceState
    undo = [S.SUCCEEDED, S.IN_PROGRESS, S.FAILED, None]
    row = {
        "rollout": Rollout(name="spring", version="2.0.0", created_at=1.0, undo_requested=True),
        "status": RolloutStatus(
            name="spring",
            phase=RolloutPhase.UNDOING,
            wave=1,
            counts={S.SUCCEEDED: 4},
            undo_counts={S.SUCCEEDED: 1, S.IN_PROGRESS: 1, S.FAILED: 1},
        ),
        "devices": [
            DeviceProgress(
                rollout="spring", device_id=f"d{i}", state=S.SUCCEEDED, wave=1, undo=state
            )
            for i, state in enumerate(undo)
        ],
    }
    console = Console(width=120, record=True)
    console.print(_waves(row))
    lines = console.export_text().splitlines()
    wave1 = next(line for line in lines if line.strip().startswith("1 "))
    back = next(line for line in lines if line.strip().startswith("undo"))
    assert wave1.split()[-3:] == ["4/4", "0", "0"]
    assert back.split()[-3:] == ["2/3", "1", "1"]
    caption = " ".join(" ".join(lines).split())  # the caption wraps at the table's width
    assert "Undoing; devices: 4 succeeded; undo: 1 failed, 1 in_progress, 1 succeeded" in caption


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("7d", 604800.0),
        ("12.5", 12.5),
        ("0", 0.0),
    ],
)
def test_duration(text: str, seconds: float) -> None:
    assert duration("--soak", text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10 m", "5y", "31d", "-1"])
def test_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--soak"):
        duration("--soak", text)
