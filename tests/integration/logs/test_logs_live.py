"""Log streaming with real agent processes: follow, history after the agent stopped, filters."""

from __future__ import annotations

from pathlib import Path

from logs_support import fake_journalctl, json_lines, start_fleet
from tests.helpers import eventually, run_fleet, start_agent_process, stop_process

from harmony_fleet.adapters.nats.server import EmbeddedNats

DEVICE = "edge-logs"


async def test_follow_while_running_then_history_after_the_agent_stopped(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    url = nats_server.url
    journalctl = fake_journalctl(tmp_path)
    agent = start_agent_process(
        DEVICE,
        url,
        tmp_path,
        extra=("--journal-unit", "ticker.service", "--journalctl", str(journalctl)),
    )
    follow_out = tmp_path / "follow.out"
    try:
        follow = start_fleet(
            follow_out, "logs", DEVICE, "-f", "--json", "-n", "0", "--source", "ticker.service",
            "--nats", url,
        )  # fmt: skip
        try:

            def live_ticks() -> list[int]:
                lines = json_lines(follow_out.read_text())
                return [int(line["msg"].split()[1]) for line in lines]

            seen = await eventually(lambda: len(live_ticks()) >= 5, timeout=30, what="live lines")
            assert seen
            numbers = live_ticks()
            assert numbers == sorted(numbers), "lines arrive in order"
            assert len(set(numbers)) == len(numbers), "and once each"
        finally:
            follow.terminate()
            _, err = follow.communicate(timeout=10)
        assert follow.returncode == 0, err
        assert agent.poll() is None
    finally:
        assert stop_process(agent) == 0

    # The agent is gone: the stream still has its lines.
    last = run_fleet("logs", DEVICE, "--source", "unit.ticker", "-n", "3", "--nats", url)
    assert last.returncode == 0, last.stderr
    rows = last.stdout.splitlines()
    assert len(rows) == 3 and all(" unit.ticker main/" in row and ": tick " in row for row in rows)

    own = run_fleet("logs", DEVICE, "--source", "agent", "--json", "--nats", url)
    assert own.returncode == 0, own.stderr
    lines = json_lines(own.stdout)
    assert {line["source"] for line in lines} == {"agent"}
    assert {line["role"] for line in lines} == {"main"}
    assert {"agent starting", "connected"} <= {line["msg"] for line in lines}

    one = run_fleet("logs", DEVICE, "--grep", "^tick 3$", "--since", "1h", "--json", "--nats", url)
    assert one.returncode == 0, one.stderr
    assert [line["msg"] for line in json_lines(one.stdout)] == ["tick 3"]

    none = run_fleet("logs", DEVICE, "--grep", "no such line", "--nats", url)
    assert none.returncode == 3
    assert none.stderr.strip() == f"fleet: error: no log lines for {DEVICE} (matching no such line)"
