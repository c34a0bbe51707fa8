"""A real 3-node NATS JetStream cluster on loopback, TLS and credentials required as on one node.

:class:`~harmony_fleet.adapters.nats.devcluster.DevCluster` is what ``fleet server --dev-cluster
3`` runs: every node its own store and ports, routes with TLS both ways and a password, the
fleet's buckets and streams created with three replicas. The admin's context names every node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.devcluster import DevCluster


@pytest.fixture
def nats_cluster(tmp_path: Path, _own_config_home: Path) -> Iterator[DevCluster]:
    cluster = DevCluster(
        base_dir=tmp_path / "cluster",
        log_dir=tmp_path,
        context_file=_own_config_home / "harmony-fleet" / "context.json",
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_options(nats_cluster: DevCluster) -> NatsOptions:
    return nats_cluster.client_options(reconnect_wait_s=0.2)


@pytest.fixture
async def cnc(cluster_options: NatsOptions) -> AsyncIterator[NatsClient]:
    """A client connection to the cluster (every node's URL)."""
    client = await connect(cluster_options.with_name("test"))
    try:
        yield client
    finally:
        await client.close()
