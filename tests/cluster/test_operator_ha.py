"""Operator high availability on a real 3-node cluster: two ``fleet operator`` processes, one
active through the lease (TTL 2 s), a real agent heartbeating (ADR-023).

* SIGKILL of the active one: the standby holds the lease within twice the TTL and writes the
  registry with the next epoch.
* SIGSTOP of the active one past the TTL, then SIGCONT: the standby has taken over, and the old
  one, awake again, writes nothing (no record with its epoch lands after the new epoch's first)
  and exits 75.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.devcluster import DevCluster
from harmony_fleet.adapters.nats.fleet_kv import LEASE, FleetKV
from harmony_fleet.contracts.lease import LEASE_KEY
from tests.helpers import eventually, fleet_cmd, start_agent_process, stop_process

TTL = 2.0


class Operators:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                fleet_cmd(
                    "operator", "--name", name, "--lease-ttl", str(TTL), "--admit", "any",
                    "--kv-replicas", "3", "--refresh", "1", "--log-json",
                    "--state-dir", str(self.tmp / name),
                ),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            stop_process(proc)


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[Operators]:
    ops = Operators(tmp_path)
    try:
        yield ops
    finally:
        ops.stop()


@pytest.fixture
def agent(nats_cluster: DevCluster, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_agent_process("edge-1", ",".join(nats_cluster.urls), tmp_path, interval=0.5)
    try:
        yield proc
    finally:
        stop_process(proc)


class Writes:
    """Every registry write of edge-1, in order: (when, lease epoch)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []

    def epochs(self) -> list[int]:
        return [epoch for _, epoch in self.seen]

    def first(self, epoch: int) -> float | None:
        return next((t for t, e in self.seen if e == epoch), None)


@pytest.fixture
async def writes(cnc: NatsClient) -> AsyncIterator[Writes]:
    found = Writes()
    devices = await FleetKV(cnc).devices()

    async def follow() -> None:
        async for entry in devices.values("edge-1"):
            found.seen.append((time.monotonic(), entry.value.lease_epoch))

    task = asyncio.ensure_future(follow())
    try:
        yield found
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _holder(cnc: NatsClient) -> tuple[str, int] | None:
    entry = await (await FleetKV(cnc).open(LEASE)).get(LEASE_KEY)
    return (entry.value.holder, entry.value.epoch) if entry is not None else None


async def _active_and_standby(operators: Operators, cnc: NatsClient, writes: Writes) -> None:
    operators.start("ops-a")
    await eventually(lambda: _holder(cnc), timeout=60, what="ops-a holding the lease")
    assert await _holder(cnc) == ("ops-a", 1)
    operators.start("ops-b")
    await eventually(
        lambda: "standby" in operators.log("ops-b"), timeout=60, what="ops-b a standby"
    )
    await eventually(lambda: writes.first(1), timeout=30, what="a record written by epoch 1")


async def test_the_standby_takes_over_within_two_ttls_after_sigkill_of_the_active_one(
    operators: Operators,
    cnc: NatsClient,
    agent: subprocess.Popen[bytes],
    writes: Writes,
) -> None:
    await _active_and_standby(operators, cnc, writes)
    operators.procs["ops-a"].kill()
    killed = time.monotonic()
    await eventually(
        lambda: _is_holder(cnc, "ops-b"), timeout=30, interval=0.05, what="ops-b holding it"
    )
    took = time.monotonic() - killed
    await eventually(lambda: writes.first(2), timeout=30, what="a record written by epoch 2")
    first_write = (writes.first(2) or 0.0) - killed
    print(f"takeover: lease after {took:.2f} s, first registry write after {first_write:.2f} s")
    assert await _holder(cnc) == ("ops-b", 2)
    assert took < 2 * TTL
    assert first_write < 2 * TTL + 1.0  # plus one flush pass and the write itself


async def _is_holder(cnc: NatsClient, name: str) -> bool:
    holder = await _holder(cnc)
    return holder is not None and holder[0] == name


async def test_a_paused_active_operator_is_deposed_and_once_awake_writes_nothing(
    operators: Operators,
    cnc: NatsClient,
    agent: subprocess.Popen[bytes],
    writes: Writes,
) -> None:
    await _active_and_standby(operators, cnc, writes)
    old = operators.procs["ops-a"]
    os.kill(old.pid, signal.SIGSTOP)
    await eventually(lambda: _is_holder(cnc, "ops-b"), timeout=30, what="ops-b taking over")
    await eventually(lambda: writes.first(2), timeout=30, what="a record written by epoch 2")
    os.kill(old.pid, signal.SIGCONT)
    code = await asyncio.to_thread(old.wait, 30)
    assert code == 75, operators.log("ops-a")
    assert "operator lease lost" in operators.log("ops-a")
    await eventually(lambda: len(writes.seen) > writes.epochs().index(2) + 2, timeout=30)
    after = writes.epochs()[writes.epochs().index(2) :]
    assert set(after) == {2}, f"a record of the deposed epoch landed after the takeover: {after}"
    assert await _holder(cnc) == ("ops-b", 2)
