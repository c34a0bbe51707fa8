"""Helpers of the systemd tier: ``fleet`` and ``systemctl`` inside, heartbeats and KV outside."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, write_marker
from harmony_fleet.artifacts import ArtifactManifest
from harmony_fleet.contracts import (
    HEARTBEAT,
    AgentUpgradePhase,
    Heartbeat,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    new_upgrade_id,
    subjects,
)
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from tests.systemd.nspawn import Machine

HERE = Path(__file__).resolve().parent
ARTIFACTS_IN_CONTAINER = "/srv/artifacts"
SERVICE = "harmony-fleet-agent"
PREFIX = "/opt/harmony-fleet"
INTERVAL = 0.5


@dataclass(frozen=True)
class Served:
    """Where the host serves the artifacts, and where the container sees the same files."""

    base_url: str
    manifests: dict[str, ArtifactManifest]

    def url(self, v: str) -> str:
        return f"{self.base_url}/{self.manifests[v].file}"

    def path_inside(self, v: str) -> str:
        return f"{ARTIFACTS_IN_CONTAINER}/{self.manifests[v].file}"


def fleet(box: Machine, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``fleet …`` inside the container, with the same venv Python (bound at the same path)."""
    return box.run(sys.executable, str(HERE / "fleet_in_container.py"), *args, check=check)


def install(box: Machine, device: str, nats_url: str, served: Served, v: str) -> str:
    """``fleet agent install`` from the HTTP server (URL + SHA-256); its output."""
    m = served.manifests[v]
    done = fleet(
        box,
        *["agent", "install", "--device-id", device, "--nats", nats_url],
        *["--artifact-url", served.url(v), "--sha256", m.sha256],
        *["--heartbeat-interval", str(INTERVAL)],
        "--allow-unsigned-releases",  # not on signed releases yet
    )
    return done.stdout


def current(box: Machine) -> str:
    return box.run("readlink", f"{PREFIX}/current").stdout.strip()


def versions(box: Machine) -> list[str]:
    return box.sh(f"ls -A {PREFIX}/versions").stdout.split()


def candidate_units(box: Machine) -> list[str]:
    out = box.run(
        *["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full"],
        f"{SERVICE}-candidate-*",
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def main_pid(box: Machine) -> int:
    out = box.run("systemctl", "show", "-p", "MainPID", "--value", f"{SERVICE}.service").stdout
    return int(out.strip() or 0)


def agent_processes(box: Machine, device: str) -> list[str]:
    """Command lines of agent processes of ``device`` (not the shell that asks)."""
    out = box.run("ps", "-eo", "args", "--no-headers").stdout
    return [
        line
        for line in out.splitlines()
        if " agent run " in line and f"--device-id {device} " in line and "ps -eo" not in line
    ]


@dataclass
class Beats:
    """Every heartbeat of one device, with its arrival time on the host."""

    seen: list[tuple[float, Heartbeat]] = field(default_factory=list)

    def of(self, *, version: str, role: str | None = None, after: float = 0.0) -> list[Heartbeat]:
        return [
            hb
            for t, hb in self.seen
            if t >= after and hb.agent_version == version and (role is None or hb.role == role)
        ]

    def max_gap(self, start: float, end: float) -> float:
        times = [start, *(t for t, _ in self.seen if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


@contextlib.asynccontextmanager
async def heartbeats(nc: NatsClient, device: str) -> AsyncIterator[Beats]:
    beats = Beats()

    async def on(msg: Any) -> None:
        beats.seen.append((time.monotonic(), HEARTBEAT.decode(msg.data)))

    sub = await nc.subscribe(subjects.heartbeat(device), cb=on)
    try:
        yield beats
    finally:
        await sub.unsubscribe()


async def status_of(nc: NatsClient, device: str) -> UpgradeStatus | None:
    kv = await FleetKV(nc).statuses()
    entry = await kv.get(subjects.kv_key(device))
    return entry.value if entry is not None else None


async def phase_is(
    nc: NatsClient, device: str, uid: str, *phases: AgentUpgradePhase
) -> UpgradeStatus | None:
    s = await status_of(nc, device)
    return s if s is not None and s.upgrade_id == uid and s.phase in phases else None


async def request_upgrade(
    nc: NatsClient, device: str, served: Served, v: str, **timeouts: float
) -> UpgradeMarker:
    m = served.manifests[v]
    marker = UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=device,
        target_version=v,
        artifact_url=served.url(v),
        sha256=m.sha256,
        size=m.size,
        requested_at=time.time(),
        requested_by="systemd-tier",
        timeouts=UpgradeTimeouts(**{"self_test_s": 60.0, "watch_s": 3.0, **timeouts}),
    )
    await write_marker(nc, marker)
    return marker


@contextlib.asynccontextmanager
async def operator(url: str) -> AsyncIterator[Operator]:
    """The real operator, in this process, against the host's NATS."""
    op = Operator(
        OperatorConfig(
            nats=NatsOptions(servers=(url,), reconnect_wait_s=0.2),
            flush_interval_s=0.2,
            presence=PresencePolicy(refresh_s=1.0),
        )
    )
    task = asyncio.ensure_future(op.run())
    try:
        await asyncio.wait_for(op.ready.wait(), 30)
        yield op
    finally:
        op.stop.set()
        await asyncio.wait_for(task, 30)
