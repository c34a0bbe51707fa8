"""``fleet server``: run the embedded nats-server with JetStream in the foreground.

Once the server accepts clients, :class:`~harmony_fleet.adapters.nats.server.EmbeddedNats`
creates the fleet's KV buckets and log stream (one replica; the server bootstrap, see
docs/nats.md), so agents started before any operator find them.

Secure by default: the first start makes the auth setup and the TLS certificates in the store
(docs/security.md), every start runs with TLS and authentication required and writes the
admin's context (``$XDG_CONFIG_HOME/harmony-fleet/context.json``) that every other ``fleet``
command finds by itself. ``--insecure`` runs the old open server and says so on every start.

Cluster mode (docs/operations.md): ``--cluster-name``, ``--server-name``, ``--cluster-listen``
and ``--routes`` run this server as one node of a NATS JetStream cluster, routes with TLS both
ways and a password (:mod:`~harmony_fleet.adapters.nats.cluster`); every node uses a copy of the
same auth setup (``--auth-dir``). Such a node creates the fleet's buckets and streams with
``--replicas`` (default 3) once the cluster has elected its JetStream leader. ``--dev-cluster N``
runs N nodes on loopback in one process group (:mod:`~harmony_fleet.adapters.nats.devcluster`),
for development and tests.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import click

from harmony_fleet.adapters.nats import context
from harmony_fleet.adapters.nats.cluster import ClusterSpec, parse_route
from harmony_fleet.adapters.nats.devcluster import DevCluster
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.cli import exit_codes
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)


def default_store_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harmony-fleet" / "nats"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT", param_hint="--listen")
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: port must be a number", param_hint="--listen"
        ) from None
    if not (0 < number < 65536 or number == -1):
        raise click.BadParameter(f"{value!r}: port out of range", param_hint="--listen")
    return host, number


@click.command("server")
@click.option("--listen", default="127.0.0.1:4222", show_default=True, metavar="HOST:PORT")
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="JetStream storage. [default: $XDG_STATE_HOME/harmony-fleet/nats]",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="No authentication, no TLS: anyone who reaches the port controls every device. "
    "For experiments only.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="A dev/test server: it may issue sim credentials (fleet sim, docs/sim.md). Without it "
    "(the default, what production runs) `fleet credentials issue --role sim` is refused.",
)
@click.option("--cluster-name", default=None, help="Run as one node of this NATS cluster.")
@click.option("--server-name", default=None, help="This node's unique name in the cluster.")
@click.option(
    "--cluster-listen",
    default="0.0.0.0:6222",
    show_default=True,
    metavar="HOST:PORT",
    help="Where this node's routes listen (with --cluster-name).",
)
@click.option(
    "--routes",
    multiple=True,
    metavar="HOST:PORT[,...]",
    help="Route ports of every node, this one included (with --cluster-name; repeatable).",
)
@click.option(
    "--auth-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The auth setup (keys, CA, resolver), the same copy on every node of a cluster. "
    "[default: STORE_DIR/auth]",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 5),
    default=None,
    help="Replicas of the fleet's buckets and streams this server creates (raised, never "
    "lowered). [default: 1 alone, 3 in a cluster]",
)
@click.option(
    "--dev-cluster",
    type=click.IntRange(1, 5),
    default=None,
    metavar="N",
    help="Run N nodes on loopback (client ports from --listen's on, free ones with port -1), "
    "each with its own store under --store-dir: for development and tests.",
)
def server_cmd(
    listen: str,
    store_dir: Path | None,
    insecure: bool,
    cluster_name: str | None,
    server_name: str | None,
    cluster_listen: str,
    routes: tuple[str, ...],
    auth_dir: Path | None,
    replicas: int | None,
    dev_cluster: int | None,
    dev: bool,
) -> None:
    """Run NATS with JetStream in the foreground (the embedded default), with TLS and
    authentication required unless --insecure; one node of a cluster with --cluster-name, a
    whole cluster on loopback with --dev-cluster N."""
    host, port = parse_listen(listen)
    where = context.default_path()
    store = store_dir or default_store_dir()
    if insecure and (cluster_name or dev_cluster):
        raise click.UsageError("a cluster runs with TLS and authentication: no --insecure")
    if dev_cluster is not None:
        _run_dev_cluster(dev_cluster, host, port, store, where)
        return
    cluster = _cluster_spec(cluster_name, server_name, cluster_listen, routes)
    server = EmbeddedNats(
        store_dir=store,
        auth_dir=auth_dir,
        host=host,
        port=port,
        insecure=insecure,
        context_file=None if insecure else where,
        dev=dev,
        cluster=cluster,
        provision=cluster is None,
        kv_replicas=replicas or (3 if cluster else 1),
    )

    def forward(signum: int, _frame: object) -> None:
        # Not stop(): it waits for the process, and this handler interrupts the main thread's
        # own wait for it (the two deadlock on Popen's lock); wait() returns once it exits.
        server.terminate()

    if insecure:
        click.echo(
            "fleet server: WARNING: --insecure: no authentication and no TLS; anyone who can "
            f"reach {listen} can run code as root on every device",
            err=True,
        )
    try:
        url = server.start()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if cluster is not None:  # the buckets once the cluster has a JetStream leader
        server.provision_when_ready(
            lambda: click.echo(
                f"fleet server: the fleet's buckets and streams are ready ({server.kv_replicas} "
                "replicas)",
                err=True,
            )
        )
    # Before the start line: whoever read it may stop us at once.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    security = (
        "INSECURE (open to anyone)"
        if insecure
        else f"TLS and credentials required; admin context {where}"
    ) + ("; dev server: sim credentials may be issued" if dev else "")
    ready = (
        f"node {cluster.server_name} of cluster {cluster.name}, routes on "
        f"{cluster.host}:{server.cluster_port}; the fleet's buckets follow once the cluster "
        "has a JetStream leader"
        if cluster
        else "the fleet's buckets and log stream are ready"
    )
    click.echo(
        f"fleet server: NATS with JetStream at {url}, store {server.store_dir}; {security}; "
        f"{ready}",
        err=True,
    )

    code = server.wait()
    server.stop()
    raise SystemExit(exit_codes.OK if code in (0, -signal.SIGTERM) else exit_codes.FAILED)


def _cluster_spec(
    name: str | None, server_name: str | None, listen: str, routes: tuple[str, ...]
) -> ClusterSpec | None:
    if name is None:
        if server_name or routes:
            raise click.UsageError("--server-name and --routes go with --cluster-name")
        return None
    if not server_name:
        raise click.UsageError("--cluster-name needs --server-name (unique per node)")
    listen_host, listen_port = parse_listen(listen)
    flat = tuple(r for value in routes for r in value.replace(",", " ").split())
    try:
        for route in flat:
            parse_route(route)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--routes") from None
    if not flat:
        raise click.UsageError("--cluster-name needs --routes (every node, this one included)")
    return ClusterSpec(
        name=name, server_name=server_name, host=listen_host, port=listen_port, routes=flat
    )


def _run_dev_cluster(size: int, host: str, port: int, store: Path, where: Path) -> None:
    ports = tuple(-1 if port == -1 else port + i for i in range(size))
    cluster = DevCluster(base_dir=store, size=size, host=host, ports=ports, context_file=where)

    def forward(signum: int, _frame: object) -> None:
        for node in cluster:
            node.terminate()

    try:
        urls = cluster.start()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    click.echo(
        f"fleet server: a {size}-node NATS cluster at {','.join(urls)}, stores under {store}; "
        f"TLS and credentials required; admin context {where}; the fleet's buckets and streams "
        f"are ready ({cluster.replicas} replicas)",
        err=True,
    )
    codes = [node.wait() for node in cluster]
    cluster.stop()
    ok = all(code in (0, -signal.SIGTERM) for code in codes)
    raise SystemExit(exit_codes.OK if ok else exit_codes.FAILED)


def register(group: click.Group) -> None:
    group.add_command(server_cmd)
