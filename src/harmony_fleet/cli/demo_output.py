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
#: Signed, then its bytes in the object store replaced: refused by every device.
V_TAMPERED = "2.5.0"
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
    V_TAMPERED: (
        f"[bold]upgrade to {V_TAMPERED}[/]: signed, then its artifact replaced in the store;",
        "refused before anything is installed (hash mismatch)",
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
    for col in ("DEVICE", "RUNS", "TARGET", "PHASE"):
        table.add_column(col, no_wrap=True)
    table.add_column("DETAIL", no_wrap=True, overflow="ellipsis", max_width=30)
    table.add_column("MAX GAP", no_wrap=True)
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
    """One line per device and upgrade: the outcome, the time it took, the largest heartbeat
    gap its table showed (fits in 80 columns)."""
    table = Table(box=None, header_style="bold")
    for col in ("DEVICE", "UPGRADE", "OUTCOME", "TIME", "MAX GAP"):
        table.add_column(col, no_wrap=True)
    for name, d in result["devices"].items():
        up, bad, late = d["upgrade"], d["broken_upgrade"], d["post_commit_upgrade"]
        for target, one, took in (
            (V2, up, f"commit {_s(up['time_to_commit_s'])}"),
            (V3, bad, f"rollback {_s(bad['time_to_rollback_s'])}"),
            (V4, late, f"back after {_s(late['time_to_post_commit_rollback_s'])}"),
        ):
            gap = one.get("max_heartbeat_gap_s")
            table.add_row(
                name,
                f"to {target}",
                f"{one['outcome']} {one['error_code']}".strip(),
                took,
                f"{gap:.2f}s" if gap is not None else "",
            )
    return table


def _s(seconds: float | None) -> str:
    return f"{seconds:.1f}s" if seconds is not None else "-"


def verdict_line(result: dict[str, Any]) -> str:
    """The last lines: the heartbeat figure, which upgrades it covers, and the verdict."""
    verdict = "[green]all as expected[/]" if result["ok"] else "[red]NOT as expected[/]"
    covered = " and ".join(GAP_UPGRADES)
    return (
        f"largest heartbeat gap, upgrades to {covered}: {result['max_heartbeat_gap_s']:.2f}s "
        f"(interval {result['heartbeat_interval_s']}s)\n"
        f"({V4} crashes on purpose: its gaps are not counted): {verdict}"
    )
