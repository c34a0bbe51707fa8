"""Log streaming under stress with real agent processes: a flood, bad journal input, NATS away."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from logs_support import Beats, drop_reports, fake_journalctl, stored, ticks
from tests.helpers import eventually, start_agent_process, stop_process

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import LogLevel
from harmony_fleet.contracts.logs import TRUNCATION_MARKER

FLOOD = 2000
RATE, BURST = 20, 50


async def test_a_flood_is_rate_limited_counted_and_bad_journal_input_skipped(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    device = "edge-flood"
    started = time.monotonic()
    agent = start_agent_process(
        device,
        nats_server.url,
        tmp_path,
        extra=(
            "--journal-unit",
            "flood.service",
            "--journalctl",
            str(fake_journalctl(tmp_path, flood=FLOOD)),
            "--log-rate",
            str(RATE),
            "--log-burst",
            str(BURST),
            "--log-report-interval",
            "0.3",
        ),
    )
    try:

        async def report_with_all_drops() -> object:
            lines, _ = await stored(nc, device, source="agent")
            reports = drop_reports(lines)
            if reports and reports[-1].fields["rate_limit"] >= FLOOD - BURST - 100:
                return reports[-1]
            return None

        report = await eventually(report_with_all_drops, timeout=30, what="a drop report")
        flood, _ = await stored(nc, device, source="unit.flood")
        elapsed = time.monotonic() - started
        assert agent.poll() is None
    finally:
        assert stop_process(agent) == 0

    # Bounded: the burst plus the rate over the agent's life, out of 2001 lines offered.
    assert BURST <= len(flood) <= BURST + RATE * elapsed
    assert report.level is LogLevel.WARNING  # type: ignore[attr-defined]
    fields = report.fields  # type: ignore[attr-defined]
    assert fields["rate_limit"] + len(flood) == FLOOD + 1, "every line is shipped or counted"
    # Three lines that are not journal entries, one over the 64 KiB line limit.
    assert fields["malformed"] == 4
    assert fields["buffer_full"] == 0 and fields["disconnected"] == 0
    # Oversized but well-formed: shipped, cut, marked.
    big = flood[0]
    assert big.truncated and big.msg.endswith(TRUNCATION_MARKER) and big.level is LogLevel.ERROR
    assert big.seq == 1
    assert [line.seq for line in flood] == sorted({line.seq for line in flood})


async def test_nats_down_then_up_the_agent_beats_on_keeps_the_newest_lines_and_counts_drops(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = "edge-outage"
    counter = tmp_path / "ticks"
    monkeypatch.setenv("FAKE_JOURNAL_TICKS", str(counter))
    beats = Beats()
    await beats.start(nc, device)
    agent = start_agent_process(
        device,
        nats_server.url,
        tmp_path,
        interval=0.3,
        extra=(
            "--journal-unit",
            "ticker.service",
            "--journalctl",
            str(fake_journalctl(tmp_path)),
            "--log-buffer",
            "10",
            "--log-report-interval",
            "0.3",
        ),
    )
    try:

        async def some_ticks_stored() -> bool:
            lines, _ = await stored(nc, device, source="unit.ticker")
            return len(lines) >= 3

        await eventually(some_ticks_stored, timeout=30, what="ticks in the stream")
        nats_server.stop()
        down_at = ticks(counter)
        # 40 lines (2 s) while NATS is away: four times the buffer.
        await eventually(lambda: ticks(counter) >= down_at + 40, timeout=30, what="ticks")
        up_at = ticks(counter)
        beats_before = len(beats.seen)
        nats_server.start()

        await eventually(
            lambda: len(beats.seen) > beats_before + 2, timeout=30, what="heartbeats resume"
        )

        async def disconnected_drops() -> object:
            lines, _ = await stored(nc, device, source="agent")
            reports = drop_reports(lines)
            return reports and reports[-1].fields["disconnected"] > 0 and reports[-1]

        report = await eventually(disconnected_drops, timeout=30, what="disconnected drops")
        assert agent.poll() is None, "the agent kept running"
        lines, _ = await stored(nc, device, source="unit.ticker")
    finally:
        assert stop_process(agent) == 0

    # The agent's own clock says when it got NATS back; lines written before that (and after
    # the server went away) could only have reached the stream through the buffer.
    reconnected = next(
        json.loads(row)["ts"]
        for row in (tmp_path / f"{device}.log").read_text().splitlines()
        if '"nats reconnected"' in row
    )
    during = [
        line for line in lines if int(line.msg.split()[1]) > down_at and line.ts < reconnected
    ]
    assert 1 <= len(during) <= 10, "the newest lines of the outage, no more than the buffer"
    assert report.fields["disconnected"] >= up_at - down_at - 10  # type: ignore[attr-defined]
