"""The 3-node cluster: every bucket and stream replicated three times, one node's loss survived.

Real nats-server processes on loopback (the ``nats_cluster`` fixture), TLS and credentials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.devcluster import DevCluster, free_ports
from harmony_fleet.adapters.nats.fleet_kv import BUCKETS, LOG_STREAM, FleetKV
from harmony_fleet.adapters.nats.health import stream_health
from harmony_fleet.adapters.nats.provision import provision
from harmony_fleet.contracts import DeviceRecord
from harmony_fleet.errors import FleetError, TemporaryError
from tests.helpers import eventually, fleet_cmd, run_fleet


def _record(device: str) -> DeviceRecord:
    now = time.time()
    return DeviceRecord(
        device_id=device, current_version="1.0.0", online=True, first_seen=now, last_seen=now
    )


async def test_every_bucket_and_stream_has_three_replicas_a_leader_and_no_lag(
    cnc: NatsClient,
) -> None:
    streams = {s.name: s for s in await stream_health(cnc)}
    expected = {f"KV_{b.name}" for b in BUCKETS} | {LOG_STREAM}
    assert expected <= set(streams)
    for name in expected:
        s = streams[name]
        assert (s.replicas, len(s.followers)) == (3, 2), name
        assert s.leader in {"n1", "n2", "n3"}, name
    assert all(s.ok for s in streams.values()), [s for s in streams.values() if not s.ok]


async def test_provisioning_with_fewer_replicas_and_opening_a_bucket_never_lower_them(
    cnc: NatsClient,
) -> None:
    await provision(cnc, replicas=1)  # an operator started with the default --kv-replicas 1
    devices = await FleetKV(cnc).devices()
    await devices.put("edge-1", _record("edge-1"))
    streams = {s.name: s for s in await stream_health(cnc)}
    assert {streams[f"KV_{b.name}"].replicas for b in BUCKETS} == {3}
    assert streams[LOG_STREAM].replicas == 3


async def test_kv_writes_ride_through_the_loss_of_the_stream_leader_and_the_node_catches_up(
    nats_cluster: DevCluster, cnc: NatsClient
) -> None:
    devices = await FleetKV(cnc).devices()
    await devices.put("edge-1", _record("edge-1"))
    leader = next(s.leader for s in await stream_health(cnc) if s.name == "KV_fleet_devices")
    index = int(str(leader).removeprefix("n")) - 1
    nats_cluster.kill(index)
    started = time.monotonic()

    async def written() -> bool:
        try:
            await devices.put("edge-2", _record("edge-2"))
        except FleetError:
            return False
        return True

    await eventually(written, timeout=30, interval=0.2, what="a KV write after the leader died")
    stall = time.monotonic() - started
    print(f"KV write stall after killing the stream leader {leader}: {stall:.1f} s")
    assert (await devices.get("edge-1")) is not None  # nothing lost
    nats_cluster.restart(index)

    async def healthy() -> bool:
        try:  # the node rejoining can leave a JetStream API request unanswered for a while
            return all(s.ok for s in await stream_health(cnc))
        except TemporaryError:
            return False

    await eventually(healthy, timeout=30, interval=0.2, what="every replica current again")
    streams = {s.name: s for s in await stream_health(cnc)}
    assert streams["KV_fleet_devices"].messages == 2


def test_fleet_server_dev_cluster_runs_three_nodes_and_fleet_doctor_reports_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "server.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            fleet_cmd(
                "server", "--dev-cluster", "3", "--listen", "127.0.0.1:-1",
                "--store-dir", str(tmp_path / "store"),
            ),
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "fleet server:" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.05)
        assert "3-node NATS cluster" in out.read_text()
        doctor = run_fleet("doctor", "--json")
        assert doctor.returncode == 0, doctor.stderr
        assert '"replicas":3' in doctor.stdout and '"ok":true' in doctor.stdout
        assert {p.name for p in (tmp_path / "store").iterdir()} >= {"auth", "n1", "n2", "n3"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0


def test_three_fleet_server_nodes_form_a_cluster_with_one_shared_auth_setup(
    tmp_path: Path,
) -> None:
    """The production path: one ``fleet server --cluster-name ...`` per node (here on one
    machine), every node listing every route, one copy of the auth setup."""
    client_ports = free_ports("127.0.0.1", 3)
    route_ports = free_ports("127.0.0.1", 3)
    routes = ",".join(f"127.0.0.1:{p}" for p in route_ports)
    procs: list[subprocess.Popen[bytes]] = []
    outs = [tmp_path / f"n{i + 1}.out" for i in range(3)]
    try:
        for i in range(3):
            with open(outs[i], "wb") as sink:
                procs.append(
                    subprocess.Popen(
                        fleet_cmd(
                            "server", "--listen", f"127.0.0.1:{client_ports[i]}",
                            "--store-dir", str(tmp_path / f"n{i + 1}"),
                            "--auth-dir", str(tmp_path / "auth"),
                            "--cluster-name", "fleet", "--server-name", f"n{i + 1}",
                            "--cluster-listen", f"127.0.0.1:{route_ports[i]}",
                            "--routes", routes,
                        ),
                        stdout=sink, stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
                )  # fmt: skip
            _wait_for(outs[i], "fleet server: NATS", procs[i])
        for i in range(3):  # every node provisions (idempotent), each says so once it could
            _wait_for(outs[i], "buckets and streams are ready (3 replicas)", procs[i])
        doctor = run_fleet("doctor", "--json")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert '"replicas":1' not in doctor.stdout and '"replicas":3' in doctor.stdout
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in procs]
    assert codes == [0, 0, 0]


def _wait_for(out: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in {out.read_text()}"
        time.sleep(0.05)
