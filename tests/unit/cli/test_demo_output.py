"""What ``fleet demo`` prints, captured from the pure rendering functions."""

from __future__ import annotations

import io
import re

from rich.console import Console

from harmony_fleet.cli.demo_output import (
    HEADINGS,
    V2,
    V3,
    V4,
    V_TAMPERED,
    Row,
    largest_gaps,
    print_heading,
    summary_table,
    upgrade_table,
    verdict_line,
)


def console(width: int = 80) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=False, color_system=None), out


def rows(target: str, *gaps: float) -> list[Row]:
    return [
        Row(f"demo-{i + 1:02d}", "1.0.0", target, "Succeeded", "", gap)
        for i, gap in enumerate(gaps)
    ]


def test_each_heading_is_on_lines_of_its_own_and_never_wraps_in_80_columns() -> None:
    con, out = console(80)
    rounds = ((V2, (0.5, 1.234)), (V_TAMPERED, (0.3, 0.2)), (V3, (0.4, 0.9)), (V4, (3.5, 0.2)))
    for version, gaps in rounds:
        print_heading(con, version)
        con.print(upgrade_table(rows(version, *gaps)))
    lines = out.getvalue().splitlines()
    for version, heading in HEADINGS.items():
        plain = [re.sub(r"\[/?[a-z ]*\]", "", h) for h in heading]
        first = lines.index(plain[0])  # the whole first line, alone: it did not wrap
        assert lines[first : first + len(plain)] == plain, version
        assert lines[first - 1] == ""  # a blank line before each round
        assert lines[first + len(plain)].split() == [
            "DEVICE",
            "RUNS",
            "TARGET",
            "PHASE",
            "DETAIL",
            "MAX",
            "GAP",
        ]
    # A table never runs into the next heading: every table line starts with a device name
    # or the header, not with text glued after the last row.
    assert not [line for line in lines if "demo-" in line and "upgrade to" in line]


def test_the_summary_s_largest_gap_is_the_largest_the_tables_showed_and_says_which() -> None:
    shown = {V2: rows(V2, 0.501, 1.234), V3: rows(V3, 1.001, 0.9), V4: rows(V4, 3.3, 3.1)}
    table_gaps = {
        v: [float(g) for g in re.findall(r"(\d+\.\d\d)s", render(upgrade_table(r)))]
        for v, r in shown.items()
    }
    gaps = largest_gaps(shown[V2], shown[V3])
    per_upgrade = {v: largest_gaps(r) for v, r in shown.items()}

    def one(v: str, name: str, **kw: object) -> dict[str, object]:
        return {"error_code": "", **kw, "max_heartbeat_gap_s": per_upgrade[v][name]}

    result = {
        "ok": True,
        "heartbeat_interval_s": 0.5,
        "max_heartbeat_gap_s": max(gaps.values()),
        "devices": {
            name: {
                "upgrade": one(V2, name, outcome="Succeeded", time_to_commit_s=3.0),
                "broken_upgrade": one(V3, name, outcome="RolledBack", time_to_rollback_s=6.0),
                "post_commit_upgrade": one(
                    V4,
                    name,
                    outcome="RolledBack",
                    error_code="post_commit",
                    time_to_post_commit_rollback_s=9.0,
                ),
                "runs": V2,
                "max_heartbeat_gap_s": gap,
            }
            for name, gap in gaps.items()
        },
    }
    text = verdict_line(result)
    largest = max(table_gaps[V2] + table_gaps[V3])
    assert f"largest heartbeat gap, upgrades to {V2} and {V3}: {largest:.2f}s" in text
    assert f"{V4} crashes on purpose" in text
    summary = render(summary_table(result))
    assert all(len(line) <= 80 for line in summary.splitlines()), summary
    for v in (V2, V3, V4):  # each upgrade's row shows the gap its table showed
        in_summary = [float(g) for g in re.findall(rf"to {v} .* (\d+\.\d\d)s\s*$", summary, re.M)]
        assert in_summary == table_gaps[v], (v, summary)


def render(renderable: object, width: int = 80) -> str:
    con, out = console(width)
    con.print(renderable)
    return out.getvalue()
