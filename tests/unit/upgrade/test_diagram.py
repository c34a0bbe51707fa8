"""The ADR's state diagram is the one generated from the table: they cannot drift."""

from __future__ import annotations

from pathlib import Path

from harmony_fleet.core.upgrade import diagram
from harmony_fleet.core.upgrade.states import UpgradeState

ADR = Path(__file__).resolve().parents[3] / "docs" / "adr" / "022-agent-self-upgrade.md"


def test_adr_embeds_the_generated_diagram() -> None:
    text = ADR.read_text()
    start = text.index(diagram.BEGIN)
    end = text.index(diagram.END) + len(diagram.END)
    assert text[start:end] == diagram.markdown_block(), (
        "regenerate: python -m harmony_fleet.core.upgrade.diagram"
    )


def test_every_state_appears_and_only_real_edges_are_drawn() -> None:
    source = diagram.mermaid()
    for state in UpgradeState:
        assert f"note right of {state.value}:" in source
    assert "Idle --> Committing" not in source  # only a stop can start a commit
    assert "CutoverReady --> Committing: StopReceived" in source
    assert "Committing --> Committed: CommitDone" in source


def test_the_module_prints_the_diagram(capsys: object) -> None:
    diagram.main()
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out == diagram.mermaid()


def test_the_restart_arrows_carry_their_conditions() -> None:
    source = diagram.mermaid()
    assert "Idle --> Watching: AgentRestarted (committed, new main, watch window)" in source
    assert "Idle --> RollingBack: AgentRestarted (a candidate may exist)" in source
