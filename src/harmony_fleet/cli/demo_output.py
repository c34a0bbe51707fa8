"""What ``fleet demo`` prints, as pure functions of plain rows (tested without a fleet).

Each round of upgrades gets its heading on lines of its own (short enough for 80 columns),
then its table; the summary says which upgrades its heartbeat figure covers, and takes the
figure from the rows the tables showed, rounded as they showed it, so that the two agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

log = logging.getLogger(__name__)

V1, V2, V3, V4 = "1.0.0", "2.0.0", "3.0.0", "4.0.0"
#: The upgrades whose heartbeat gaps the summary's "largest gap" covers.
GAP_UPGRADES = (V2, V3)
#: The post-commit watch window of the demo's upgrades: short, so that Succeeded comes soon.
DEMO_WATCH_S = 20.0
#: Each round's heading: short lines, so that none wraps in an 80-column terminal.
HEADINGS = {
    V2: (
        f"[bold]upgrade to {V2}[/]: committed once the operator saw {V2} heartbeat,",
        f"Succeeded once it ran {DEMO_WATCH_S:g} s without trouble",
    ),
    V3: (f"[bold]upgrade to {V3}[/]: broken (passes its self-test, never heartbeats)",),
    V4: (
        f"[bold]upgrade to {V4}[/]: crashes after the commit; each device rolls itself",
        f"back within {DEMO_WATCH_S:g} s, without the operator",
    ),
}


@dataclass(frozen=True)
class Row:
    """One line of an upgrade table, as shown."""

    device: str
    runs: str
    target: str
    phase: str
    detail: str
    gap_s: float | None


def upgrade_table(rows: list[Row]) -> Table:
    """The live table of one round of upgrades (its heading is printed before it, apart)."""
    table = Table(box=None, header_style="bold")
    for col in ("DEVICE", "RUNS", "TARGET", "PHASE", "DETAIL", "MAX GAP"):
        table.add_column(col)
    for r in rows:
        style = {"Succeeded": "green", "RolledBack": "yellow", "Failed": "red"}.get(r.phase, "")
        table.add_row(
            r.device,
            r.runs,
            r.target,
            f"[{style}]{r.phase}[/]" if style else r.phase,
            r.detail,
            f"{r.gap_s:.2f}s" if r.gap_s is not None else "",
        )
    return table


def print_heading(console: Console, version: str) -> None:
    """A blank line, then the round's heading, each line apart from the table below it."""
    console.print()
    for line in HEADINGS[version]:
        console.print(line)


def largest_gaps(*rounds: list[Row]) -> dict[str, float]:
    """Per device, the largest heartbeat gap the tables of ``rounds`` showed, as shown (2
    decimals): the summary must agree with the tables above it."""
    out: dict[str, float] = {}
    for rows in rounds:
        for r in rows:
            if r.gap_s is not None:
                out[r.device] = max(out.get(r.device, 0.0), round(r.gap_s, 2))
    return out


def summary_table(result: dict[str, Any]) -> Table:
    """One line per device: each upgrade's outcome and times."""
    table = Table(box=None, header_style="bold")
    columns = (
        "DEVICE",
        f"TO {V2}",
        "COMMIT",
        f"TO {V3}",
        "ROLLBACK",
        f"TO {V4}",
        "BACK AFTER COMMIT",
        "RUNS",
        f"MAX GAP ({', '.join(GAP_UPGRADES)})",
    )
    for col in columns:
        table.add_column(col)
    for name, d in result["devices"].items():
        up, bad, late = d["upgrade"], d["broken_upgrade"], d["post_commit_upgrade"]
        table.add_row(
            name,
            up["outcome"],
            f"{up['time_to_commit_s']}s",
            bad["outcome"],
            f"{bad['time_to_rollback_s']}s",
            f"{late['outcome']} {late['error_code']}".strip(),
            f"{late['time_to_post_commit_rollback_s']}s",
            d["runs"],
            f"{d['max_heartbeat_gap_s']:.2f}s",
        )
    return table


def verdict_line(result: dict[str, Any]) -> str:
    """The last line: the heartbeat figures, which upgrades they cover, and the verdict."""
    verdict = "[green]all as expected[/]" if result["ok"] else "[red]NOT as expected[/]"
    covered = " and ".join(GAP_UPGRADES)
    return (
        f"heartbeat interval {result['heartbeat_interval_s']}s; largest gap during the upgrades "
        f"to {covered} {result['max_heartbeat_gap_s']:.2f}s ({V4} crashes on purpose: not "
        f"counted): {verdict}"
    )
