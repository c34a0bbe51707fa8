"""The state diagram of the upgrade machine, generated from :data:`machine.TABLE`.

The ADR embeds this output between markers and a test compares the two, so the picture a person
reads is the table the code runs. Self-loops (ignored duplicates, progress, deferred markers) are
left out: the diagram shows where the machine can *go*. A decision table (the restart) draws one
arrow per case, labelled with its condition.

    python -m harmony_fleet.core.upgrade.diagram
"""

from __future__ import annotations

from harmony_fleet.core.diagram import fenced, state_diagram
from harmony_fleet.core.upgrade.events import EVENT_TYPES
from harmony_fleet.core.upgrade.machine import TABLE
from harmony_fleet.core.upgrade.states import PHASE_OF, TERMINAL_STATES, UpgradeState

BEGIN = "<!-- BEGIN GENERATED DIAGRAM -->"
END = "<!-- END GENERATED DIAGRAM -->"


def _node(state: UpgradeState) -> str:
    return state.value


def edges() -> list[tuple[UpgradeState, UpgradeState, list[str]]]:
    """(source, target, event names) for every state change the table allows, in a stable order."""
    order = {t: i for i, t in enumerate(EVENT_TYPES)}
    grouped: dict[tuple[UpgradeState, UpgradeState], list[str]] = {}
    for source in UpgradeState:
        rules = sorted(TABLE[source].items(), key=lambda item: order[item[0]])
        for event_type, rule in rules:
            name = event_type.__name__
            if rule.cases:
                conditions: dict[UpgradeState, list[str]] = {}
                for target, when in rule.cases:
                    conditions.setdefault(target, []).append(when)
                for target, whens in conditions.items():
                    if target is not source:
                        label = f"{name} ({' / '.join(whens)})"
                        grouped.setdefault((source, target), []).append(label)
                continue
            for target in UpgradeState:
                if target in rule.targets and target is not source:
                    grouped.setdefault((source, target), []).append(name)
    return [(s, t, names) for (s, t), names in grouped.items()]


def mermaid() -> str:
    """The Mermaid ``stateDiagram-v2`` source of the machine."""
    return state_diagram(
        _node(UpgradeState.IDLE),
        ((_node(s), _node(t), names) for s, t, names in edges()),
        (_node(state) for state in UpgradeState if state in TERMINAL_STATES),
        ((_node(state), f"phase {PHASE_OF[state].value}") for state in UpgradeState),
    )


def markdown_block() -> str:
    """The fenced block placed between :data:`BEGIN` and :data:`END` in the ADR."""
    return fenced(BEGIN, END, mermaid())


def main() -> None:
    print(mermaid(), end="")


if __name__ == "__main__":
    main()
