"""One node's settings in a NATS JetStream cluster, and its routes' TLS and password.

A node of a cluster is an :class:`~harmony_fleet.adapters.nats.server.EmbeddedNats` with a
:class:`ClusterSpec`: a cluster name, its own ``server_name`` (JetStream needs one per node), the
address its routes listen on, and the routes to the other nodes. Routes keep the secure defaults
of the clients' side:

* **TLS both ways**: each node shows a route certificate signed by the fleet's CA (server and
  client use, :func:`~harmony_fleet.adapters.nats.pki.make_route_cert`) and requires the same of
  every node that dials it (``verify: true``): a server without a certificate from that CA
  cannot join.
* **A route password** (``<auth>/route.secret``, made once, 0600): a second lock, so a leaked
  route certificate alone is not enough.

Every node of one cluster shares one auth setup (the ``auth`` directory: operator, accounts, CA,
resolver): copy it to each machine (docs/operations.md). Revocations pushed to one node reach the
others through the ``full`` resolver.

A development cluster on loopback is :class:`~harmony_fleet.adapters.nats.devcluster.DevCluster`.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass

from harmony_fleet.adapters.nats.auth import AuthStore
from harmony_fleet.adapters.nats.files import write_public, write_secret
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: The user name on every route (the password is the cluster's secret).
ROUTE_USER = "route"


@dataclass(frozen=True)
class ClusterSpec:
    """One node's place in a cluster."""

    name: str
    server_name: str
    host: str = "127.0.0.1"
    port: int = -1
    """The routes' listen port; -1 picks a free one (reported in the ports file)."""
    routes: tuple[str, ...] = ()
    """``HOST:PORT`` of the other nodes' route ports (this node's own may be among them)."""

    def route_hosts(self) -> tuple[str, ...]:
        """The names this node is reached by on its routes: its listen address and every route
        host (list every node, itself included, and one certificate serves them all)."""
        return tuple(sorted({self.host, *(parse_route(r)[0] for r in self.routes)}))


def parse_route(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (a ``nats-route://`` or ``tls://`` prefix is allowed) as a pair."""
    text = value.split("://", 1)[-1].rsplit("@", 1)[-1].strip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"route {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def route_secret(auth: AuthStore) -> str:
    """The cluster's route password, made on first use (shared by every node's auth setup)."""
    path = auth.root / "route.secret"
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(24))
    return path.read_text().strip()


def ensure_route_cert(auth: AuthStore, hosts: tuple[str, ...]) -> None:
    """Sign this node's route certificate for ``hosts`` unless the one on disk already has them."""
    from harmony_fleet.adapters.nats.pki import make_route_cert  # noqa: PLC0415

    tls = auth.tls_dir
    names = tls / "route-hosts.json"
    try:
        have = json.loads(names.read_text()) if (tls / "route.pem").exists() else None
    except (OSError, ValueError):
        have = None
    if have is not None and set(hosts) <= set(have):
        return
    make_route_cert(tls, hosts=hosts)
    write_public(names, json.dumps(sorted(hosts)))


def cluster_config(spec: ClusterSpec, auth: AuthStore, *, port: int) -> str:
    """The ``server_name`` and ``cluster`` block of a node's nats.conf (TLS both ways and the
    route password)."""
    ensure_route_cert(auth, spec.route_hosts())
    password = route_secret(auth)
    tls = auth.tls_dir
    routes = ", ".join(
        json.dumps(f"nats-route://{ROUTE_USER}:{password}@{host}:{p}")
        for host, p in map(parse_route, spec.routes)
    )
    return (
        f"server_name: {json.dumps(spec.server_name)}\n"
        "cluster: {\n"
        f"  name: {json.dumps(spec.name)}\n"
        f"  listen: {json.dumps(f'{spec.host}:{port}')}\n"
        f"  routes: [{routes}]\n"
        f"  authorization: {{ user: {ROUTE_USER}, password: {json.dumps(password)}, timeout: 5 }}\n"
        "  tls: {\n"
        f"    cert_file: {json.dumps(str(tls / 'route.pem'))}\n"
        f"    key_file: {json.dumps(str(tls / 'route-key.pem'))}\n"
        f"    ca_file: {json.dumps(str(auth.ca_file))}\n"
        "    verify: true\n"
        "    timeout: 5\n"
        "  }\n"
        "}\n"
    )
