"""A development NATS cluster on loopback: ``fleet server --dev-cluster 3`` and the tests.

:class:`DevCluster` starts ``size`` nodes (:class:`~harmony_fleet.adapters.nats.server.
EmbeddedNats` with a :class:`~harmony_fleet.adapters.nats.cluster.ClusterSpec`), each with its own
store directory and the auth setup shared beside them, TLS and credentials required as on one
node, routes with TLS both ways and a password. Ports are never guessed: node 1 listens on a free
cluster ports are picked free on loopback by the operating system (all at once, just before the
start: a JetStream cluster node must be given its routes, so a node cannot report its port
afterwards as the client port is), and every node gets the routes to all of them, itself
included, as in production. A restart keeps every port and store. Once every node is up, the
fleet's buckets and streams are created with ``min(size, 3)`` replicas.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from harmony_fleet.adapters.nats.auth import AuthStore
from harmony_fleet.adapters.nats.cluster import ClusterSpec
from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.adapters.nats.context import Context
from harmony_fleet.adapters.nats.provision import provision_blocking
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)


@dataclass
class DevCluster:
    """``size`` nodes on loopback, one store directory each (``<base>/n1`` ...) and the auth
    setup shared (``<base>/auth``); the fleet's buckets and streams get ``size`` replicas (at
    most 3)."""

    base_dir: Path
    size: int = 3
    host: str = "127.0.0.1"
    ports: tuple[int, ...] = ()
    """Client ports, one per node; empty: free ones."""
    name: str = "fleet-dev"
    log_dir: Path | None = None
    context_file: Path | None = None
    nodes: list[EmbeddedNats] = field(default_factory=list)
    route_ports: tuple[int, ...] = ()

    @property
    def auth(self) -> AuthStore:
        return AuthStore(self.base_dir / "auth")

    @property
    def replicas(self) -> int:
        return min(self.size, 3)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self.nodes)

    def client_options(self, **overrides: object) -> NatsOptions:
        """The admin's options with every node's URL."""
        return replace(self.auth.admin_options(self.urls), **overrides)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[EmbeddedNats]:
        return iter(self.nodes)

    def _node(self, index: int) -> EmbeddedNats:
        if self.size < 1:
            raise ConfigError("a cluster needs at least one node")
        port = self.ports[index] if self.ports else -1
        return EmbeddedNats(
            store_dir=self.base_dir / f"n{index + 1}",
            auth_dir=self.base_dir / "auth",
            host=self.host,
            port=port,
            provision=False,
            log_file=(self.log_dir / f"n{index + 1}.log") if self.log_dir else None,
            cluster=ClusterSpec(
                name=self.name,
                server_name=f"n{index + 1}",
                host=self.host,
                port=self.route_ports[index],
                routes=tuple(f"{self.host}:{p}" for p in self.route_ports),
            ),
        )

    def start(self, *, timeout: float = 60.0) -> tuple[str, ...]:
        """Start every node, then create the fleet's buckets and streams with the cluster's
        replicas once JetStream has a leader; write the admin's context (every URL)."""
        if self.ports and len(self.ports) != self.size:
            raise ConfigError(f"{len(self.ports)} ports for {self.size} nodes")
        if not self.route_ports:
            self.route_ports = free_ports(self.host, self.size)
        try:
            for index in range(self.size):
                node = self._node(index)
                node.start()
                self.nodes.append(node)
            self.provision(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        if self.context_file is not None:
            Context.write_for(
                self.context_file, url=",".join(self.urls), creds=self.auth.admin_creds,
                ca=self.auth.ca_file,
            )  # fmt: skip
        return self.urls

    def provision(self, *, timeout: float = 60.0) -> None:
        """Create (or raise to the cluster's replicas) every bucket and stream; retried until
        JetStream answers (a new cluster elects its meta leader in a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                provision_blocking(self.client_options(), replicas=self.replicas)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise Unavailable(f"the cluster's JetStream is not ready: {exc}") from exc
                log.debug("cluster not ready yet", extra={"error": str(exc)})
                time.sleep(0.25)

    def restart(self, index: int) -> str:
        """Start node ``index`` again (after :meth:`kill` or :meth:`stop_node`), on its old
        ports and store."""
        return self.nodes[index].start()

    def kill(self, index: int) -> None:
        self.nodes[index].kill()

    def stop_node(self, index: int) -> None:
        self.nodes[index].stop()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> DevCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_ports(host: str, count: int) -> tuple[int, ...]:
    """``count`` distinct ports free on ``host`` now (held together, then released)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            held.append(sock)
            sock.bind((host, 0))
        return tuple(sock.getsockname()[1] for sock in held)
    finally:
        for sock in held:
            sock.close()
