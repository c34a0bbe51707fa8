"""`fleet rollout` against a real server: create, list, status, levers, and bad input."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result
from tests.integration.rollout.test_drive_once import (
    DEVICES,
    _device_reports,
    _devices_obey,
    _setup,
    signed,
)

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import ROLLOUTS, FleetKV
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli.main import cli
from harmony_fleet.contracts import AgentUpgradePhase, Rollout, RolloutPhase
from harmony_fleet.operator.rollouts import RolloutLoop, drive_once


def fleet(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def with_kv(server: EmbeddedNats, work: Callable[[FleetKV], Awaitable[T]]) -> T:
    """Run ``work`` on a connection of its own (the commands run their own event loops)."""

    async def go() -> T:
        nc = await connect(server.client_options())
        try:
            return await work(FleetKV(nc))
        finally:
            await nc.close()

    return asyncio.run(go())


async def _spec(kv: FleetKV) -> Rollout:
    entry = await (await kv.open(ROLLOUTS)).get("spring")
    assert entry is not None
    return entry.value


T = TypeVar("T")

CREATE = [
    "rollout",
    "create",
    "spring",
    "--version",
    "2.0.0",
    "--canary",
    "2",
    "--max-in-flight",
    "3",
    "--soak",
    "0",
    "--spread",
    "0s",
    "--window",
    "Mon-Sun 00:00-23:59 UTC",
    "--selector",
    "arch=arm64",
]


def test_create_list_status_and_levers(nats_server: EmbeddedNats) -> None:
    done = fleet(*CREATE, "--deadline", "7d", "--halt-failure-rate", "5%", "--watch-window", "2m")
    assert done.exit_code == 0, done.output
    value = with_kv(nats_server, _spec)
    assert (value.version, value.selector, value.canary.count) == ("2.0.0", {"arch": "arm64"}, 2)
    assert value.halt_failure_rate == 5.0 and value.soak_s == 0.0
    assert value.timeouts.watch_s == 120.0
    assert value.deadline is not None and value.deadline > time.time() + 6 * 86400
    assert [w.days for w in value.windows] == [[0, 1, 2, 3, 4, 5, 6]]

    again = fleet(*CREATE)
    assert again.exit_code == exit_codes.REFUSED and "exists" in again.output

    listed = fleet("rollout", "list", "--json")
    assert listed.exit_code == 0
    (row,) = json.loads(listed.output)
    assert row["rollout"]["name"] == "spring" and row["status"]["phase"] == "Canary"

    for verb, field, expected in (
        ("pause", "paused", True),
        ("resume", "paused", False),
        ("undo", "undo_requested", True),
    ):
        result = fleet("rollout", verb, "spring")
        assert result.exit_code == 0, result.output
        assert getattr(with_kv(nats_server, _spec), field) is expected, verb

    missing = fleet("rollout", "status", "nope")
    assert missing.exit_code == exit_codes.NOT_FOUND and missing.output.count("\n") == 1


def test_status_shows_why_a_rollout_halted(nats_server: EmbeddedNats) -> None:
    now = time.time()
    with_kv(nats_server, lambda kv: _setup(kv, now, name="other"))  # devices
    assert fleet(*CREATE[:-2]).exit_code == 0  # every device

    async def canaries_report(kv: FleetKV) -> tuple[str, str, RolloutPhase]:
        first = await drive_once(kv, "spring", now=now, releases=signed)
        bad, good = sorted(s.device_id for s in first.starts)
        await _device_reports(kv, bad, AgentUpgradePhase.ROLLED_BACK, now)
        await _device_reports(kv, good, AgentUpgradePhase.SUCCEEDED, now)
        return (
            bad,
            good,
            (await drive_once(kv, "spring", now=now + 1, releases=signed)).status.phase,
        )

    bad, good, phase = with_kv(nats_server, canaries_report)
    assert phase is RolloutPhase.HALTED
    shown = fleet("rollout", "status", "spring")
    assert shown.exit_code == 0
    assert "Halted" in shown.output and "canary: 1 of 2 devices failed" in shown.output
    assert f"{bad}: rolled_back post_commit" in shown.output
    watched = fleet("rollout", "status", "spring", "--watch")
    assert watched.exit_code == exit_codes.FAILED  # it ended halted
    assert f"{bad}: rolled_back post_commit" in watched.output
    as_json = json.loads(fleet("rollout", "status", "spring", "--json").output)
    # the devices with a record (the rest are pending): the two canaries
    assert {d["device_id"]: d["state"] for d in as_json["devices"]} == {
        bad: "rolled_back",
        good: "succeeded",
    }
    assert as_json["status"]["counts"] == {
        "pending": len(DEVICES) - 2,
        "rolled_back": 1,
        "succeeded": 1,
    }


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--canary", "lots"),
        ("--max-in-flight", "101%"),
        ("--soak", "forever"),
        ("--soak", "40d"),
        ("--window", "Mon 25:00-26:00"),
        ("--selector", "arch"),
        ("--halt-failure-rate", "3"),
        ("--watch-window", "soon"),
        ("--version", "../x"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(
    nats_server: EmbeddedNats, flag: str, value: str
) -> None:
    args = [*CREATE[:3], "--version", "2.0.0", flag, value]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == exit_codes.USAGE, result.output
    assert result.output.count("\n") == 1


def test_the_levers_of_a_rollout_from_kubernetes_are_its_resources(
    nats_server: EmbeddedNats,
) -> None:
    """A rollout a ``Rollout`` resource created follows that resource's spec: the commands
    refuse (their change would be undone within a second), naming the resource."""
    from_k8s = Rollout(
        name="spring", version="2.0.0", created_at=time.time(), created_by="kubernetes:ops/spring"
    )

    async def put(kv: FleetKV) -> None:
        await (await kv.open(ROLLOUTS)).create("spring", from_k8s)

    with_kv(nats_server, put)
    for verb in ("pause", "abort", "undo"):
        refused = fleet("rollout", verb, "spring")
        assert refused.exit_code == exit_codes.REFUSED, refused.output
        assert "ops/spring" in refused.output and "kubectl" in refused.output
    assert with_kv(nats_server, _spec) == from_k8s


async def test_watch_follows_a_live_rollout_to_done_then_sums_it_up(
    nats_server: EmbeddedNats, nc: NatsClient
) -> None:
    """``status --watch`` while the operator's loop drives the rollout and devices obey: it
    ends by itself when the rollout does, exit 0, with a bar per wave and the summary."""
    kv = FleetKV(nc)
    await _setup(kv, time.time())  # canary 2, max-in-flight 3: canaries, then 2 waves
    stop = asyncio.Event()
    tasks = [
        asyncio.ensure_future(RolloutLoop(every_s=0.05).run(kv, stop, signed)),
        asyncio.ensure_future(_devices_obey(kv, stop)),
    ]
    try:
        watched = await asyncio.to_thread(
            fleet, "rollout", "status", "spring", "--watch", "--every", "0.1"
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert watched.exit_code == 0, watched.output
    # the last frame of the live view (stderr), then the summary (stdout)
    assert "rollout spring: 2.0.0, Done, wave 2" in watched.output
    assert f"\ndevices: {len(DEVICES)} succeeded\n" in watched.output
    assert "undo" not in watched.output
    last = watched.output.rsplit("WAVE", 1)[1].splitlines()
    bars = {line.split()[0]: line.split()[-3:] for line in last[1:4]}
    assert bars == {"canary": ["2/2", "0", "0"], "1": ["3/3", "0", "0"], "2": ["3/3", "0", "0"]}
