"""A local fleet on a 3-node NATS cluster with several operator processes (ADR-023).

:class:`ClusterFleet` is :class:`~harmony_fleet.testing.localfleet.LocalFleet` with the embedded
server replaced by a :class:`~harmony_fleet.adapters.nats.devcluster.DevCluster` (every bucket
with 3 replicas; every client, agent and operator given every node's URL) and with any number of
``fleet operator`` processes, each with its own lease name: one active, the others standbys.
The chaos tier and ``bench/failover.py`` drive it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.devcluster import DevCluster
from harmony_fleet.adapters.nats.fleet_kv import LEASE, FleetKV
from harmony_fleet.contracts.lease import LEASE_KEY, OperatorLease
from harmony_fleet.testing.artifact_server import ArtifactServer
from harmony_fleet.testing.localfleet import LocalFleet
from harmony_fleet.testing.processes import end_process

log = logging.getLogger(__name__)


@dataclass
class ClusterFleet(LocalFleet):
    """See the module docstring. ``operators`` processes are started by :meth:`start`."""

    operators: int = 2
    lease_ttl_s: float = 2.0
    cluster: DevCluster | None = None
    operator_procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.cluster is not None
        return ",".join(self.cluster.urls)

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifact_dir.mkdir(exist_ok=True)
        await self.init_releases()  # signed releases, as LocalFleet's
        self.cluster = DevCluster(base_dir=self.workdir / "nats", log_dir=self.workdir)
        await asyncio.to_thread(self.cluster.start)
        self.server = self.cluster.nodes[0]  # issues credentials (the auth setup is shared)
        self.server.issue("operator", "operator", self.operator_creds)
        self.http = ArtifactServer(self.artifact_dir)
        self.http.start()
        self.nc = await connect(self.cluster.client_options().with_name("clusterfleet"))
        await self.monitor.start(self.nc)
        for index in range(self.operators):
            self.start_named_operator(f"ops-{index + 1}")

    def operator_nats(self) -> NatsOptions:
        assert self.cluster is not None and self.server is not None
        return NatsOptions(
            servers=self.cluster.urls,
            creds_file=str(self.operator_creds),
            tls_ca_file=str(self.server.auth.ca_file),
        )

    def operator_args(self) -> list[str]:
        creds = ["--nats-creds", str(self.operator_creds)]
        return [
            "--nats", self.url, *creds, *self.ca_args(), "--log-json", "--refresh", "5",
            "--kv-replicas", "3", "--lease-ttl", str(self.lease_ttl_s),
            "--tuf-root", str(self.releases.trust_root),
        ]  # fmt: skip

    def start_named_operator(self, name: str) -> subprocess.Popen[bytes]:
        """Start (or start again) the operator process ``name``."""
        with open(self.workdir / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harmony_fleet", "operator", *self.operator_args(),
                 "--name", name, "--state-dir", str(self.workdir / name)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.operator_procs[name] = proc
        return proc

    async def lease(self) -> OperatorLease | None:
        assert self.nc is not None
        entry = await (await FleetKV(self.nc).open(LEASE)).get(LEASE_KEY)
        return entry.value if entry is not None else None

    async def active_operator(self) -> str | None:
        """The name of the operator holding the lease (None: nobody, or released)."""
        lease = await self.lease()
        return lease.holder if lease is not None and not lease.released else None

    def kill_operator(self, name: str) -> None:
        proc = self.operator_procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(15)

    async def stop_operator(self, *, kill: bool = False) -> None:
        await asyncio.gather(*(end_process(p, kill=kill) for p in self.operator_procs.values()))
        await super().stop_operator(kill=kill)

    async def stop(self) -> None:
        await super().stop()  # devices, operators, client, HTTP, node 1
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)
