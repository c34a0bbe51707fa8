"""The phase table: moves it does not declare are refused, and docs/rollouts.md draws it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.contracts.rollout import RolloutPhase, RolloutStatus, Share
from harmony_fleet.core.rollout import diagram
from harmony_fleet.core.rollout.phases import TABLE, TERMINAL, TableError, Trigger, move

from .world import World, fleet, rollout

P = RolloutPhase
DOC = Path(__file__).resolve().parents[4] / "docs" / "rollouts.md"


def test_the_doc_embeds_the_generated_diagram() -> None:
    text = DOC.read_text()
    start = text.index(diagram.BEGIN)
    end = text.index(diagram.END) + len(diagram.END)
    assert text[start:end] == diagram.markdown_block(), (
        "regenerate: python -m harmony_fleet.core.rollout.diagram"
    )


@pytest.mark.parametrize(
    ("phase", "trigger", "target"),
    [
        (P.HALTED, Trigger.RESUME, P.WAVES),  # a halt is left by undo or abort only
        (P.HALTED, Trigger.SOAK_PASSED, P.WAVES),
        (P.CANARY, Trigger.SOAK_PASSED, P.WAVES),  # no wave before the soak
        (P.UNDONE, Trigger.UNDO, P.UNDOING),
        (P.UNDOING, Trigger.ABORT, P.ABORTED),
        (P.DONE, Trigger.PAUSE, P.PAUSED),
    ],
)
def test_moves_the_table_does_not_declare_are_refused(
    phase: RolloutPhase, trigger: Trigger, target: RolloutPhase
) -> None:
    with pytest.raises(TableError, match=trigger.value):
        move(RolloutStatus(name="r1", phase=phase), trigger, target)


def test_every_phase_has_a_row_and_only_undone_is_a_dead_end() -> None:
    assert set(TABLE) == set(RolloutPhase)
    assert [p for p in RolloutPhase if not TABLE[p]] == [P.UNDONE]
    assert {P.DONE, P.ABORTED, P.UNDONE} == TERMINAL
    source = diagram.mermaid()
    assert "Halted --> Undoing: Undo" in source
    assert "Paused --> Canary: Resume" in source
    assert "Halted --> Waves" not in source


def test_the_module_prints_the_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    diagram.main()
    assert capsys.readouterr().out == diagram.mermaid()


def test_no_canary_goes_straight_to_the_waves() -> None:
    world = World(rollout(canary=Share(count=0), max_in_flight=Share(count=2)), fleet(4))
    first = world.tick()
    assert first.status.phase is P.WAVES and first.status.wave == 1
    assert len(first.starts) == 2
    assert world.run().status.phase is P.DONE
