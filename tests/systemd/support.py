"""Helpers of the systemd tier: ``fleet`` and ``systemctl`` inside, heartbeats and KV outside."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
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
from tests.helpers import run_fleet
from tests.systemd.nspawn import Machine

HERE = Path(__file__).resolve().parent
ARTIFACTS_IN_CONTAINER = "/srv/artifacts"
SERVICE = "harmony-fleet-agent"
PREFIX = "/opt/harmony-fleet"
INTERVAL = 0.5
#: The interpreter the installed agent runs with: the container's own ``python3``, as on a
#: device. (The venv's base Python lives under ``/root``, which the unit's ``ProtectHome=``
#: hides from the agent; ``fleet`` itself still runs with the venv here.)
DEVICE_PYTHON = "/usr/bin/python3"


@dataclass(frozen=True)
class Served:
    """Where the host serves the artifacts, and where the container sees the same files."""

    base_url: str
    manifests: dict[str, ArtifactManifest]

    def url(self, v: str) -> str:
        return f"{self.base_url}/{self.manifests[v].file}"

    def path_inside(self, v: str) -> str:
        return f"{ARTIFACTS_IN_CONTAINER}/{self.manifests[v].file}"


@dataclass(frozen=True)
class FleetNats:
    """The host's NATS (TLS + JWT, as ``fleet server`` runs it) and this side's credentials."""

    url: str
    store_dir: Path
    ca: Path
    admin_creds: Path
    operator_creds: Path
    trust_root: Path
    """The signed release repository's first root.json (``fleet agent install --trust-root``)."""

    def cli_args(self) -> list[str]:
        """Flags for a ``fleet`` command run on the host as the admin."""
        return ["--nats", self.url, "--nats-creds", str(self.admin_creds), *self.ca_args()]

    def ca_args(self) -> list[str]:
        return ["--nats-tls-ca", str(self.ca)]

    def operator_options(self) -> NatsOptions:
        return NatsOptions(
            servers=(self.url,),
            creds_file=str(self.operator_creds),
            tls_ca_file=str(self.ca),
            reconnect_wait_s=0.2,
        )

    def device_creds(self, box: Machine, device: str) -> tuple[str, str]:
        """Issue ``device``'s credentials with ``fleet credentials issue`` here (which also
        writes its identity, which the operator admits by, into the running server) and copy them
        (and the CA) into the container's ``/root`` (0600), as a person would ``scp`` them;
        their paths inside."""
        out = Path(tempfile.mkdtemp(prefix="creds-")) / f"{device}.creds"
        done = run_fleet(
            *["credentials", "issue", "--device", device, "--out", str(out)],
            *["--store-dir", str(self.store_dir), "--nats", self.url],
        )
        assert done.returncode == 0, done.stdout + done.stderr
        inside = []
        for src in (out, out.with_name(f"{device}-ca.pem")):
            dest = box.rootfs / "root" / src.name
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(src.read_bytes())
            inside.append(f"/root/{src.name}")
        return inside[0], inside[1]


def fleet(box: Machine, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``fleet …`` inside the container, with the same venv Python (bound at the same path)."""
    return box.run(sys.executable, str(HERE / "fleet_in_container.py"), *args, check=check)


def install(box: Machine, device: str, nats: FleetNats, served: Served, v: str) -> str:
    """``fleet agent install`` from the HTTP server (URL + SHA-256) with the device's own
    credentials, pinning the release repository's root (every later upgrade is verified against
    signed metadata, its bytes fetched from the ``fleet_artifacts`` object store); its output."""
    m = served.manifests[v]
    creds, ca = nats.device_creds(box, device)
    (box.rootfs / "root" / "root.json").write_bytes(nats.trust_root.read_bytes())
    done = fleet(
        box,
        *["agent", "install", "--device-id", device, "--nats", nats.url],
        *["--nats-creds", creds, "--nats-tls-ca", ca],
        *["--artifact-url", served.url(v), "--sha256", m.sha256],
        *["--heartbeat-interval", str(INTERVAL), "--python", DEVICE_PYTHON],
        *["--trust-root", "/root/root.json"],  # upgrades: signed releases only
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


SANDBOX_SHOWN = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
}
"""What ``systemctl show`` says of a sandboxed unit (the main's, and every candidate's)."""


def shown(machine: Machine, unit: str) -> dict[str, str]:
    out = machine.run(
        "systemctl", "show", "-p", ",".join([*SANDBOX_SHOWN, "ReadWritePaths"]), unit
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def assert_sandboxed(machine: Machine, unit: str, device: str) -> None:
    """The unit runs in the agent's sandbox, with its prefix and state dir writable."""
    props = shown(machine, unit)
    assert {k: props.get(k) for k in SANDBOX_SHOWN} == SANDBOX_SHOWN, props
    assert props["ReadWritePaths"].split() == [PREFIX, f"/var/lib/harmony-fleet/{device}"]


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
async def operator(nats: FleetNats) -> AsyncIterator[Operator]:
    """The real operator, in this process, against the host's NATS (an operator credential)."""
    op = Operator(
        OperatorConfig(
            nats=nats.operator_options(),
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
