"""The phase diagram of a rollout, generated from :data:`.phases.TABLE`.

docs/rollouts.md embeds this output between markers and a test compares the two, so the picture
a person reads is the table the engine runs.

    python -m harmony_fleet.core.rollout.diagram
"""

from __future__ import annotations

from harmony_fleet.contracts.rollout import RolloutPhase
from harmony_fleet.core.diagram import fenced, state_diagram
from harmony_fleet.core.rollout.phases import TABLE, TERMINAL, Trigger

BEGIN = "<!-- BEGIN GENERATED ROLLOUT DIAGRAM -->"
END = "<!-- END GENERATED ROLLOUT DIAGRAM -->"


def edges() -> list[tuple[RolloutPhase, RolloutPhase, list[str]]]:
    """(source, target, trigger names) for every move the table allows, in a stable order."""
    grouped: dict[tuple[RolloutPhase, RolloutPhase], list[str]] = {}
    for source in RolloutPhase:
        for trigger in Trigger:
            for target in TABLE[source].get(trigger, ()):
                grouped.setdefault((source, target), []).append(trigger.value)
    return [(s, t, names) for (s, t), names in grouped.items()]


def mermaid() -> str:
    """The Mermaid ``stateDiagram-v2`` source of the rollout phases."""
    return state_diagram(
        RolloutPhase.CANARY.value,
        ((s.value, t.value, names) for s, t, names in edges()),
        (phase.value for phase in RolloutPhase if phase in TERMINAL),
    )


def markdown_block() -> str:
    """The fenced block placed between :data:`BEGIN` and :data:`END` in docs/rollouts.md."""
    return fenced(BEGIN, END, mermaid())


def main() -> None:
    print(mermaid(), end="")


if __name__ == "__main__":
    main()
