"""After a rollback, the candidate's own log lines are in the stream and upgrade-status says how
to read them. The candidate is a real second agent process, as the executors start it."""

from __future__ import annotations

import time
from pathlib import Path

from logs_support import Beats, json_lines
from tests.helpers import eventually, run_fleet, start_agent_process, stop_process

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import AgentUpgradePhase, UpgradeStatus

DEVICE = "edge-cand"


async def test_a_rolled_back_candidates_lines_are_read_by_instance(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    url = nats_server.url
    beats = Beats()
    await beats.start(nc, DEVICE)
    main = start_agent_process(DEVICE, url, tmp_path)
    (tmp_path / "candidate").mkdir()  # its own log file and state dir
    candidate = start_agent_process(
        DEVICE, url, tmp_path / "candidate", extra=("--role", "candidate", "--upgrade-id", "u-test")
    )
    try:
        cid = await eventually(lambda: beats.instance("candidate"), timeout=30, what="candidate")
        mid = await eventually(lambda: beats.instance("main"), timeout=30, what="main")
        # The rollback: the candidate is stopped; the old agent records it in the status.
        assert stop_process(candidate) == 0
        statuses = await FleetKV(nc).statuses()
        now = time.time()
        await statuses.put(
            DEVICE,
            UpgradeStatus(
                upgrade_id="u-test",
                device_id=DEVICE,
                phase=AgentUpgradePhase.ROLLED_BACK,
                from_version="0.1.0",
                to_version="0.2.0",
                instance_id=mid,
                candidate_instance_id=cid,
                error_code="no_stop",
                started_at=now - 5,
                updated_at=now,
            ),
        )
        status = run_fleet("upgrade-status", DEVICE, "--nats", url)
        assert status.returncode == 0, status.stderr
        hint = f"fleet logs {DEVICE} --instance {cid}"
        assert hint in status.stdout

        read = run_fleet(*hint.split()[1:], "--json", "--nats", url)
        assert read.returncode == 0, read.stderr
        lines = json_lines(read.stdout)
        assert lines, "the candidate's lines are in the stream after it is gone"
        assert {(x["instance_id"], x["role"], x["upgrade_id"]) for x in lines} == {
            (cid, "candidate", "u-test")
        }
        assert "agent starting" in {x["msg"] for x in lines}

        short = run_fleet("logs", DEVICE, "--instance", mid[:8], "--nats", url)
        assert short.returncode == 0, short.stderr
        assert all(f" main/{mid[:8]} " in row for row in short.stdout.splitlines())
        assert main.poll() is None
    finally:
        stop_process(candidate)
        assert stop_process(main) == 0
