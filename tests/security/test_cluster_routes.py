"""Cluster routes: a server that is not one of ours cannot join the cluster.

A node that joined would hold a replica of every bucket (markers, credentials' identities) and
could lead streams: it would see and write everything. Routes require TLS both ways with a
certificate from the fleet's CA, and the route password. The attacker here knows the password
(leaked) but holds no certificate from the CA; a control beside it: the cluster's own three.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.cluster import ROUTE_USER, route_secret
from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.devcluster import DevCluster
from harmony_fleet.adapters.nats.pki import make_ca_and_server_cert, make_route_cert
from harmony_fleet.adapters.nats.server import find_nats_server
from tests.helpers import eventually

pytestmark = pytest.mark.security


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[DevCluster]:
    cluster = DevCluster(base_dir=tmp_path / "cluster", log_dir=tmp_path)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def _servers(cluster: DevCluster) -> set[str]:
    """The names of the servers that answer a system-account ping (every node of the cluster)."""
    auth = cluster.auth
    options = NatsOptions(
        servers=cluster.urls, creds_file=str(auth.sys_creds), tls_ca_file=str(auth.ca_file)
    )
    nc = await connect(options.with_name("test-sys"))
    names: set[str] = set()
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish("$SYS.REQ.SERVER.PING", b"", reply=inbox)
        try:
            while True:
                msg = await sub.next_msg(timeout=1.0)
                names.add(json.loads(msg.data)["server"]["name"])
        except TimeoutError:
            pass
    finally:
        await nc.close()
    return names


def _start_rogue(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [find_nats_server(), "-c", str(config), "-a", "127.0.0.1", "-p", "-1", "-l", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("holds", ["no_tls", "a_foreign_ca"])
async def test_a_server_without_a_certificate_from_the_fleet_ca_cannot_join(
    nats_cluster: DevCluster, tmp_path: Path, holds: str
) -> None:
    assert await _servers(nats_cluster) == {"n1", "n2", "n3"}  # the control: our own nodes
    password = route_secret(nats_cluster.auth)
    routes = ", ".join(
        json.dumps(f"nats-route://{ROUTE_USER}:{password}@127.0.0.1:{p}")
        for p in nats_cluster.route_ports
    )
    tls = ""
    if holds == "a_foreign_ca":  # TLS with a certificate of its own CA, good for both sides
        (tmp_path / "foreign").mkdir()
        make_ca_and_server_cert(tmp_path / "foreign")
        make_route_cert(tmp_path / "foreign", hosts=("127.0.0.1",))
        foreign = tmp_path / "foreign"
        tls = (
            f"  tls: {{ cert_file: {json.dumps(str(foreign / 'route.pem'))}, "
            f"key_file: {json.dumps(str(foreign / 'route-key.pem'))}, "
            f"ca_file: {json.dumps(str(foreign / 'ca.pem'))}, verify: true, insecure: true }}\n"
        )
    config = tmp_path / "rogue.conf"
    config.write_text(
        'server_name: "rogue"\n'
        "cluster: {\n"
        '  name: "fleet-dev"\n  listen: "127.0.0.1:-1"\n'
        f"  routes: [{routes}]\n{tls}"
        "}\n"
    )
    log = tmp_path / "rogue.log"
    rogue = _start_rogue(config, log)
    try:
        node_logs = [tmp_path / f"n{i}.log" for i in (1, 2, 3)]

        def refused() -> bool:
            return any("TLS route handshake error" in p.read_text() for p in node_logs)

        await eventually(refused, timeout=20, interval=0.1, what="the nodes refusing the rogue")
        assert await _servers(nats_cluster) == {"n1", "n2", "n3"}
        assert "rogue" not in "".join(p.read_text() for p in node_logs)
    finally:
        rogue.terminate()
        rogue.wait(10)
