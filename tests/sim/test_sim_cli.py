"""``fleet sim`` from the outside: bad flags are one line naming the flag (exit 2); a run for a
set time prints its summary as one JSON line."""

from __future__ import annotations

import json

import pytest

from harmony_fleet.adapters.nats.connection import NatsOptions
from tests.helpers import run_fleet


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--devices", "5", "--id-prefix", "edge-"], "--id-prefix"),
        (["--devices", "5", "--fail-self-test", "lots"], "--fail-self-test"),
        (["--devices", "5", "--upgrade-time", "5s..1s"], "--upgrade-time"),
        (["--devices", "5", "--label", "arch"], "--label"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(flags: list[str], named: str) -> None:
    done = run_fleet("sim", *flags)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr


def test_a_timed_run_prints_its_summary_as_json(sim_options: NatsOptions) -> None:
    assert sim_options.creds_file is not None and sim_options.tls_ca_file is not None
    done = run_fleet(
        "sim",
        "--devices",
        "20",
        "--processes",
        "2",
        "--heartbeat-interval",
        "0.5",
        "--duration",
        "3s",
        "--json",
        "--nats",
        sim_options.servers[0],
        "--nats-creds",
        sim_options.creds_file,
        "--nats-tls-ca",
        sim_options.tls_ca_file,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["devices"] == 20 and summary["processes"] == 2
    assert summary["versions"] == {"1.0.0": 20}
    assert summary["counts"]["heartbeats"] >= 20
    assert summary["errors"] == []
