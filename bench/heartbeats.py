"""Benchmark: how fast the operator ingests heartbeats, against a bare nats-py subscriber.

Run: ``.venv/bin/python bench/heartbeats.py [--messages 300000] [--devices 20000]
[--connect-devices 2000] [--parts ceiling,operator,tls,http,fleet,connect]`` (smaller numbers
for a quick look on a shared machine; the targets are for the defaults).

Six parts, each against a fresh embedded nats-server, each side in its own process:

1. **ceiling**: a bare nats-py subscriber on ``fleet.*.heartbeat`` that only counts, while a
   publisher process sends ``--messages`` pre-encoded heartbeats as fast as it can;
2. **operator**: the real :class:`~harmony_fleet.operator.runtime.Operator` (decode, registry,
   coalesced KV writes) against the same blast;
3. **fleet**: ``--devices`` simulated agents (one process) beating every ``--interval`` seconds
   for ``--rounds`` rounds against the operator; then the registry in KV is read back and every
   device must be shown online.
4. **tls**: the operator part again against the secure default server (TLS, JWT auth: what
   ``fleet server`` runs). The operator holds an operator credential and admits only issued
   devices (every blast device is issued an identity first, outside the measured window); the
   publisher holds the admin's. ``tls_ratio`` is its ingest over the plain operator part's, in
   this same process (target >= 0.8).
5. **http**: the operator part again with the dashboard on (``fleet operator --http``,
   :mod:`harmony_fleet.operator.http`) and a page following it from another process (its
   event stream, and ``/metrics`` scraped every second); ``http_ratio`` is its ingest over the
   plain operator part's, in this same process (target >= 0.9).
6. **connect**: ``--connect-devices`` devices, each issued ITS OWN device credential through
   the server's setup (``EmbeddedNats.issue_many``: the issue time is reported), connect at
   once over TLS (``--sim-procs`` processes, each connection retrying as an agent does) and
   heartbeat; ``connect_2000_online_s`` is the time from the start of the connections until the
   operator's registry in KV shows every one of them online (target <= 60 s).

The final line is one JSON object: rates, their ratios (targets: ratio >= 0.5, tls_ratio >=
0.8, http_ratio >= 0.9), the operator's peak RSS, the fleet check and the connect measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import Heartbeat, Role, encode, subjects


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds (user + system) this process used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 2)


def cpu_s_of(pid: int | None) -> float | None:
    """CPU seconds another process (the nats-server) used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def payloads(devices: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(devices):
        dev = f"dev-{i:06d}"
        hb = Heartbeat(
            device_id=dev,
            instance_id=uuid.uuid4().hex,
            agent_version="1.0.0",
            role=Role.MAIN,
            seq=1,
            sent_at=time.time(),
            uptime_s=1.0,
            interval_s=5.0,
        )
        out.append((subjects.heartbeat(dev), encode(hb)))
    return out


def options(url: str, creds: str | None = None, ca: str | None = None) -> NatsOptions:
    """How a role reaches the server: open, or with its credential and the fleet CA."""
    return NatsOptions(servers=(url,), creds_file=creds, tls_ca_file=ca)


# -- roles (each runs in its own process) ------------------------------------------------------
async def role_bare(opts: NatsOptions, expect: int, idle_s: float) -> dict[str, float]:
    nc = await connect(opts)
    count = 0
    first = last = 0.0
    done = asyncio.Event()

    async def cb(msg: object) -> None:
        nonlocal count, first, last
        count += 1
        last = time.perf_counter()
        if count == 1:
            first = last
        if count >= expect:
            done.set()

    await nc.subscribe(
        subjects.ALL_HEARTBEATS,
        cb=cb,
        pending_msgs_limit=10_000_000,
        pending_bytes_limit=10_000_000 * 1024,
    )
    await nc.flush()
    print("READY", flush=True)
    await _wait_done(done, lambda: count, idle_s)
    await nc.close()
    return {"received": count, "seconds": last - first, "peak_rss_mib": peak_rss_mib()}


async def role_operator(
    opts: NatsOptions, expect: int, idle_s: float, *, http: bool = False
) -> dict[str, float]:
    from harmony_fleet.core.presence import PresencePolicy
    from harmony_fleet.operator.runtime import Extension, Operator, OperatorConfig

    extensions: list[Extension] = []
    ready_line = "READY"
    if http:  # the dashboard on, as `fleet operator --http`: a page follows it (role sse)
        from harmony_fleet.operator.http.server import HttpOptions, HttpServer
        from harmony_fleet.operator.http.tokens import new_token

        token = new_token()
        tokens = Path(tempfile.mkdtemp(prefix="bench-http-")) / "tokens"
        tokens.write_text(token + "\n")
        tokens.chmod(0o600)
        server = HttpServer(HttpOptions(port=0, token_file=tokens))
        extensions.append(server)
    op = Operator(
        OperatorConfig(nats=opts, presence=PresencePolicy(refresh_s=60.0)), extensions=extensions
    )
    if http:
        ready_line = f"READY {await server.start(op)} {token}"
    task = asyncio.ensure_future(op.run())
    await op.ready.wait()
    first = last = 0.0
    seen = 0
    orig = op.registry.ingest

    def timed(subject: str, data: bytes, now: float) -> object:
        nonlocal first, last, seen
        seen += 1
        last = time.perf_counter()
        if seen == 1:
            first = last
        return orig(subject, data, now)

    op.registry.ingest = timed  # type: ignore[method-assign]
    print(ready_line, flush=True)
    done = asyncio.Event()

    async def watch() -> None:
        while seen < expect:
            await asyncio.sleep(0.05)
        done.set()

    watcher = asyncio.ensure_future(watch())
    await _wait_done(done, lambda: seen, idle_s)
    watcher.cancel()
    # Let the registry flush, so KV writes are part of the cost we measured RSS for.
    await op.flush()
    op.stop.set()
    await task
    return {
        "received": op.registry.ingested,
        "seconds": last - first,
        "peak_rss_mib": peak_rss_mib(),
        "writes": op.writes,
        "devices": len(op.registry.devices),
        "cpu_s": cpu_s(),
    }


async def role_sse(url: str, token: str) -> dict[str, float]:
    """A dashboard page's load on the operator: follow its event stream and scrape /metrics
    every second (as a Prometheus scraping that often would), until stdin closes."""
    import aiohttp

    events = scrapes = 0
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

        async def follow() -> None:
            nonlocal events
            async with session.get(url + "/api/stream") as stream:
                async for line in stream.content:
                    if line.startswith(b"event: "):
                        events += 1
                        if events == 1:
                            print("READY", flush=True)

        async def scrape() -> None:
            nonlocal scrapes
            while True:
                async with session.get(url + "/metrics") as r:
                    await r.read()
                    scrapes += 1
                await asyncio.sleep(1.0)

        tasks = [asyncio.ensure_future(follow()), asyncio.ensure_future(scrape())]
        await asyncio.to_thread(sys.stdin.read)  # the driver closes stdin when it is done
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"events": events, "scrapes": scrapes}


async def role_operator_forever(opts: NatsOptions) -> None:
    from harmony_fleet.core.presence import PresencePolicy
    from harmony_fleet.operator.runtime import Operator, OperatorConfig

    op = Operator(OperatorConfig(nats=opts, presence=PresencePolicy(refresh_s=60.0)))
    task = asyncio.ensure_future(op.run())
    await op.ready.wait()
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await op.flush()
    result = {
        "ingested": op.registry.ingested,
        "writes": op.writes,
        "devices": len(op.registry.devices),
        "peak_rss_mib": peak_rss_mib(),
        "cpu_s": cpu_s(),
    }
    op.stop.set()
    await task
    print(json.dumps(result), flush=True)


async def _wait_done(done: asyncio.Event, progress: object, idle_s: float) -> None:
    """Wait until done, or until nothing new arrived for ``idle_s`` (messages were dropped)."""
    last_count = -1
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), idle_s)
        except TimeoutError:
            now = progress()  # type: ignore[operator]
            if now == last_count:
                return
            last_count = now


async def role_publish(opts: NatsOptions, messages: int, devices: int) -> dict[str, float]:
    nc = await connect(opts)
    batch = payloads(devices)
    start = time.perf_counter()
    for i in range(messages):
        subject, data = batch[i % devices]
        await nc.publish(subject, data)
    await nc.flush()
    seconds = time.perf_counter() - start
    await nc.close()
    return {"sent": messages, "seconds": seconds}


async def role_fleet(
    opts: NatsOptions, devices: int, interval: float, rounds: int
) -> dict[str, float]:
    """Simulated agents: every device beats once per interval, spread evenly over it."""
    nc = await connect(opts)
    batch = payloads(devices)
    start = time.perf_counter()
    late = 0.0
    for r in range(rounds):
        round_start = start + r * interval
        for i, (subject, data) in enumerate(batch):
            due = round_start + interval * i / devices
            delay = due - time.perf_counter()
            if delay > 0.002:
                await nc.flush()
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            await nc.publish(subject, data)
    await nc.flush()
    await nc.close()
    return {"sent": devices * rounds, "max_lateness_s": late}


async def role_connect(
    url: str, ca: str, creds_dir: str, names: list[str], interval: float
) -> None:
    """Devices each with its own credential: connect all at once over TLS (retrying as an agent
    does), beat once connected and every ``interval`` until stdin closes.

    Every client of this process shares its CPU, so a TLS handshake waits behind the others'
    here as it would not on a device of its own: the connect timeout is 30 s (the agent's is
    2 s), so that the simulator's own queue is not counted as refused connections."""
    from harmony_fleet.adapters.nats.connection import connect_forever

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    quiet = logging.getLogger("bench.connect")
    quiet.setLevel(logging.ERROR)
    stop = asyncio.Event()
    started = time.perf_counter()
    connected: list[float] = []
    clients = []

    async def device(name: str) -> None:
        opts = NatsOptions(
            servers=(url,),
            name=name,
            creds_file=str(Path(creds_dir) / f"{name}.creds"),
            tls_ca_file=ca,
            inbox_prefix=subjects.inbox_prefix(name),
            connect_timeout_s=30.0,
        )
        nc = await connect_forever(opts, log=quiet, stop=stop)
        if nc is None:
            return
        clients.append(nc)
        connected.append(time.perf_counter() - started)
        instance = uuid.uuid4().hex
        seq = 0
        while not stop.is_set():
            seq += 1
            beat = Heartbeat(
                device_id=name,
                instance_id=instance,
                agent_version="1.0.0",
                role=Role.MAIN,
                seq=seq,
                sent_at=time.time(),
                uptime_s=time.perf_counter() - started,
                interval_s=interval,
            )
            await nc.publish(subjects.heartbeat(name), encode(beat))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def progress() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            print(f"  connect: {len(connected)}/{len(names)} connected", file=sys.stderr)

    tasks = [asyncio.ensure_future(device(n)) for n in names]
    reporter = asyncio.ensure_future(progress())
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(nc.close() for nc in clients), return_exceptions=True)
    await reporter
    done = sorted(connected)
    print(
        json.dumps(
            {
                "connected": len(done),
                "all_connected_s": round(done[-1], 2) if done else None,
                "median_connect_s": round(done[len(done) // 2], 2) if done else None,
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "cpu_s": cpu_s(),
            }
        ),
        flush=True,
    )


# -- driver ----------------------------------------------------------------------------------
def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        raise SystemExit(f"benchmark child failed to start: {line!r}")


def result_of(proc: subprocess.Popen[str], stdin: str = "") -> dict[str, Any]:
    out, _ = proc.communicate(stdin, timeout=600)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class Server:
    """One fresh embedded nats-server for a part: open (``secure=False``), or the secure
    default (TLS + JWT) with an operator credential issued for the operator role."""

    def __init__(self, tmp: Path, name: str, *, secure: bool) -> None:
        self.nats = EmbeddedNats(store_dir=tmp / f"nats-{name}", insecure=not secure)
        self.secure = secure
        self.tmp = tmp

    def __enter__(self) -> Server:
        self.nats.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.nats.stop()

    def args(self, role: str) -> list[str]:
        """``--url`` and, when secure, ``--creds``/``--ca``: the operator's own credential for
        the operator roles, the admin's for the publishers (they speak for many devices)."""
        out = ["--url", self.nats.url]
        if self.secure:
            if role.startswith("operator"):
                creds = self.nats.issue("operator", "bench-operator", self.tmp / "operator.creds")
            else:
                creds = self.nats.admin_creds
            out += ["--creds", str(creds), "--ca", str(self.nats.auth.ca_file)]
        return out

    @property
    def admin(self) -> NatsOptions:
        return self.nats.client_options()


def consume_run(
    role: str, messages: int, devices: int, tmp: Path, *, secure: bool = False
) -> dict[str, Any]:
    name = f"{role}-tls" if secure else role
    with Server(tmp, name, secure=secure) as server:
        if secure:  # the operator admits issued devices only: issue every blast device
            started = time.perf_counter()
            server.nats.issue_many("device", [f"dev-{i:06d}" for i in range(devices)])
            issued_s = time.perf_counter() - started
        consumer = spawn("--role", role, *server.args(role), "--messages", str(messages))
        page = None
        if role == "operator-http":  # READY <url> <token>: a page follows the dashboard
            assert consumer.stdout is not None
            ready = consumer.stdout.readline().split()
            if not ready or ready[0] != "READY":
                raise SystemExit(f"benchmark child failed to start: {ready!r}")
            page = spawn("--role", "sse", "--http-url", ready[1], "--token", ready[2])
            wait_ready(page)
        else:
            wait_ready(consumer)
        pub = spawn(
            "--role",
            "publish",
            *server.args("publish"),
            "--messages",
            str(messages),
            "--devices",
            str(devices),
        )
        pub_result = result_of(pub)
        result = result_of(consumer)
        result["publish_seconds"] = pub_result["seconds"]
        if page is not None:
            result["page"] = result_of(page)
        if secure:
            result["issue_identities_s"] = round(issued_s, 2)
        return result


def fleet_run(devices: int, interval: float, rounds: int, tmp: Path) -> dict[str, object]:
    with Server(tmp, "fleet", secure=False) as server:
        op = spawn("--role", "operator-forever", *server.args("operator-forever"))
        wait_ready(op)
        sim = spawn(
            "--role",
            "fleet",
            *server.args("fleet"),
            "--devices",
            str(devices),
            "--interval",
            str(interval),
            "--rounds",
            str(rounds),
        )
        sim_result = result_of(sim)
        op_result = result_of(op, "stop\n")
        online, total = asyncio.run(_count_online(server.admin))
        return {
            "devices": devices,
            "interval_s": interval,
            "rounds": rounds,
            "registry_devices": total,
            "online": online,
            **sim_result,
            "operator_writes": op_result["writes"],
            "operator_peak_rss_mib": op_result["peak_rss_mib"],
        }


def connect_run(devices: int, procs: int, limit_s: float, tmp: Path) -> dict[str, object]:
    """Issue every device its own credential, connect them all at once over TLS, and time
    until the operator's registry (in KV) shows all of them online."""
    with Server(tmp, "connect", secure=True) as server:
        op = spawn("--role", "operator-forever", *server.args("operator-forever"))
        wait_ready(op)
        names = [f"conn-{i:05d}" for i in range(devices)]
        started = time.perf_counter()
        issued = server.nats.issue_many("device", names)
        issue_s = time.perf_counter() - started
        creds_dir = tmp / "device-creds"
        creds_dir.mkdir(mode=0o700)
        for name, creds in zip(names, issued, strict=True):
            fd = os.open(creds_dir / f"{name}.creds", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(creds)
        sims = []
        started = time.perf_counter()
        for k in range(procs):
            sims.append(
                spawn(
                    "--role",
                    "connect",
                    "--url",
                    server.nats.url,
                    "--ca",
                    str(server.nats.auth.ca_file),
                    "--creds-dir",
                    str(creds_dir),
                    "--names",
                    str(_names_file(tmp, k, names[k::procs])),
                )
            )
        for sim in sims:
            wait_ready(sim)
        server_cpu_before = cpu_s_of(server.nats.pid)
        online_s, online = asyncio.run(_wait_online(server.admin, devices, started, limit_s))
        server_cpu = cpu_s_of(server.nats.pid)
        sim_results = [result_of(sim, "stop\n") for sim in sims]
        op_result = result_of(op, "stop\n")
        return {
            "devices": devices,
            "sim_procs": procs,
            "issue_s": round(issue_s, 2),
            "online": online,
            "online_s": None if online_s is None else round(online_s, 2),
            "connected": sum(r["connected"] for r in sim_results),
            "all_connected_s": max((r["all_connected_s"] or 0.0) for r in sim_results),
            "sim_peak_rss_mib": max(r["peak_rss_mib"] for r in sim_results),
            "operator_devices": op_result["devices"],
            "operator_peak_rss_mib": round(op_result["peak_rss_mib"], 1),
            # CPU seconds spent by each side (the simulators' include their heartbeats until
            # stopped; the server's is from the start of the connections until all were online)
            "cpu_s": {
                "simulators": round(sum(r["cpu_s"] for r in sim_results), 1),
                "nats_server_until_online": None
                if server_cpu is None or server_cpu_before is None
                else round(server_cpu - server_cpu_before, 1),
                "operator": op_result["cpu_s"],
            },
        }


def _names_file(tmp: Path, k: int, names: list[str]) -> Path:
    path = tmp / f"names-{k}.txt"
    path.write_text("\n".join(names))
    return path


async def _wait_online(
    opts: NatsOptions, expect: int, started: float, limit_s: float
) -> tuple[float | None, int]:
    """Seconds from ``started`` until ``expect`` devices are online in KV (None: not within
    ``limit_s``), and how many were online at the end."""
    online = 0
    while time.perf_counter() - started < limit_s:
        online, _ = await _count_online(opts, prefix="conn-")
        if online >= expect:
            return time.perf_counter() - started, online
        await asyncio.sleep(0.5)  # polling the registry: the measured condition itself
    return None, online


async def _count_online(opts: NatsOptions, prefix: str = "") -> tuple[int, int]:
    from harmony_fleet.adapters.nats.fleet_kv import FleetKV
    from harmony_fleet.adapters.nats.kv import Entry

    nc = await connect(opts)
    try:
        kv = await FleetKV(nc).devices()
        items = await kv.snapshot(timeout_s=120)
    finally:
        await nc.close()
    mine = [e for e in items if isinstance(e, Entry) and e.key.startswith(prefix)]
    return sum(1 for e in mine if e.value.online), len(mine)


PARTS = ("ceiling", "operator", "tls", "http", "fleet", "connect")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", default="driver")
    ap.add_argument("--url")
    ap.add_argument("--creds")
    ap.add_argument("--ca")
    ap.add_argument("--creds-dir")
    ap.add_argument("--names", help="a file of device names, one a line (role connect)")
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--devices", type=int, default=20_000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--connect-devices", type=int, default=2000)
    ap.add_argument("--sim-procs", type=int, default=2)
    ap.add_argument("--connect-limit", type=float, default=120.0)
    ap.add_argument("--parts", default=",".join(PARTS), help="which parts to run")
    ap.add_argument("--http-url")
    ap.add_argument("--token")
    a = ap.parse_args()
    opts = options(a.url, a.creds, a.ca) if a.url else NatsOptions()
    if a.role == "bare":
        print(json.dumps(asyncio.run(role_bare(opts, a.messages, a.idle))))
        return
    if a.role == "operator":
        print(json.dumps(asyncio.run(role_operator(opts, a.messages, a.idle))))
        return
    if a.role == "operator-http":
        print(json.dumps(asyncio.run(role_operator(opts, a.messages, a.idle, http=True))))
        return
    if a.role == "sse":
        print(json.dumps(asyncio.run(role_sse(a.http_url, a.token))))
        return
    if a.role == "operator-forever":
        asyncio.run(role_operator_forever(opts))
        return
    if a.role == "publish":
        print(json.dumps(asyncio.run(role_publish(opts, a.messages, a.devices))))
        return
    if a.role == "fleet":
        print(json.dumps(asyncio.run(role_fleet(opts, a.devices, a.interval, a.rounds))))
        return
    if a.role == "connect":
        names = Path(a.names).read_text().split()
        asyncio.run(role_connect(a.url, a.ca, a.creds_dir, names, a.interval))
        return
    parts = set(a.parts.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; choose from {PARTS}")
    if parts & {"tls", "http"}:
        parts.add("operator")  # tls_ratio, http_ratio: against the plain operator run here
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hb-") as tmp_s:
        tmp = Path(tmp_s)
        for part in PARTS:
            if part not in parts:
                continue
            print(f"{part}: ...", file=sys.stderr)
            if part == "ceiling":
                results[part] = consume_run("bare", a.messages, a.devices, tmp)
            elif part == "operator":
                results[part] = consume_run("operator", a.messages, a.devices, tmp)
            elif part == "tls":
                results[part] = consume_run("operator", a.messages, a.devices, tmp, secure=True)
            elif part == "http":
                results[part] = consume_run("operator-http", a.messages, a.devices, tmp)
            elif part == "fleet":
                results[part] = fleet_run(a.devices, a.interval, a.rounds, tmp)
            else:
                results[part] = connect_run(a.connect_devices, a.sim_procs, a.connect_limit, tmp)
            print(f"  {results[part]}", file=sys.stderr)
    print(msgspec.json.encode(summarize(a, results)).decode())


def _rate(run: dict[str, Any] | None) -> float | None:
    if run is None:
        return None
    return float(run["received"]) / max(float(run["seconds"]), 1e-9)


def summarize(a: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    bare_rate = _rate(results.get("ceiling"))
    op_rate = _rate(results.get("operator"))
    tls_rate = _rate(results.get("tls"))
    ratio = op_rate / bare_rate if op_rate and bare_rate else None
    tls_ratio = tls_rate / op_rate if tls_rate and op_rate else None
    http_rate = _rate(results.get("http"))
    http_ratio = http_rate / op_rate if http_rate and op_rate else None
    fleet = results.get("fleet")
    conn = results.get("connect")
    rss = [
        float(r["peak_rss_mib"])
        for r in (results.get("operator"), results.get("tls"))
        if r is not None
    ] + ([float(fleet["operator_peak_rss_mib"])] if fleet else [])
    targets: dict[str, bool] = {}
    if ratio is not None:
        targets["ratio_at_least_0_5"] = ratio >= 0.5
    if tls_ratio is not None:
        targets["tls_ratio_at_least_0_8"] = tls_ratio >= 0.8
    if http_ratio is not None:
        targets["http_ratio_at_least_0_9"] = http_ratio >= 0.9
    if fleet is not None:
        targets["all_devices_online"] = fleet["online"] == a.devices
    if conn is not None:
        targets["connect_all_online_within_60_s"] = (
            conn["online_s"] is not None and conn["online_s"] <= 60.0
        )
    return {
        "benchmark": "heartbeats",
        "messages": a.messages,
        "devices": a.devices,
        "parts": sorted(results),
        "bare_subscriber_hb_per_s": None if bare_rate is None else round(bare_rate),
        "operator_hb_per_s": None if op_rate is None else round(op_rate),
        "ratio": None if ratio is None else round(ratio, 3),
        "operator_tls_jwt_hb_per_s": None if tls_rate is None else round(tls_rate),
        "tls_ratio": None if tls_ratio is None else round(tls_ratio, 3),
        "operator_http_hb_per_s": None if http_rate is None else round(http_rate),
        "http_ratio": None if http_ratio is None else round(http_ratio, 3),
        "http_page": (results.get("http") or {}).get("page"),
        "operator_cpu_s": (results.get("operator") or {}).get("cpu_s"),
        "operator_http_cpu_s": (results.get("http") or {}).get("cpu_s"),
        "bare_received": (results.get("ceiling") or {}).get("received"),
        "operator_received": (results.get("operator") or {}).get("received"),
        "operator_tls_received": (results.get("tls") or {}).get("received"),
        "operator_peak_rss_mib": round(max(rss), 1) if rss else None,
        "fleet": fleet,
        "connect": conn,
        f"connect_{a.connect_devices}_online_s": None if conn is None else conn["online_s"],
        "targets_met": targets,
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
