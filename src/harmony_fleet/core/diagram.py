"""Mermaid ``stateDiagram-v2`` text from a list of edges: the one renderer behind the generated
diagrams of the upgrade machine (ADR-022) and of a rollout's phases (docs/rollouts.md).

Each table module turns its own table into ``(source, target, labels)`` edges; this module only
spells them, so both pictures follow the same conventions (an initial arrow, one labelled arrow
per move, an arrow to ``[*]`` per terminal state, optional notes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def state_diagram(
    initial: str,
    edges: Iterable[tuple[str, str, Sequence[str]]],
    terminal: Iterable[str],
    notes: Iterable[tuple[str, str]] = (),
) -> str:
    """The diagram's source: ``initial`` state, labelled ``edges``, ``terminal`` states and
    ``notes`` (state, text) placed to the right of their state."""
    lines = ["stateDiagram-v2", f"    [*] --> {initial}"]
    lines += [f"    {source} --> {target}: {', '.join(labels)}" for source, target, labels in edges]
    lines += [f"    {state} --> [*]" for state in terminal]
    lines += [f"    note right of {state}: {text}" for state, text in notes]
    return "\n".join(lines) + "\n"


def fenced(begin: str, end: str, source: str) -> str:
    """``source`` as a fenced Mermaid block between the ``begin`` and ``end`` markers a doc
    carries (a test compares the doc's block with the generated one)."""
    return f"{begin}\n```mermaid\n{source}```\n{end}"
