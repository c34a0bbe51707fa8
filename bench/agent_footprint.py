"""Benchmark: what an idle agent costs a device, against the floor for a Python agent.

Run: ``.venv/bin/python bench/agent_footprint.py [--idle 60] [--interval 5] [--workdir DIR]``
(``--idle 5`` is the quick mode). It needs the package registries pip is configured with (or its
wheel cache): it builds its own environments.

Four processes run side by side against one embedded NATS (TLS, a device's credentials each),
started one after the other (each once the previous one has sent its first heartbeat):

* ``floor``: ``bench/floor_agent.py``, a bare nats-py script that connects and publishes the same
  heartbeat every interval, in a venv holding exactly the distributions the agent's artifact
  holds (the artifact's manifest pins them), so without aiohttp, which nats-py imports whenever
  it is installed and which the artifact does not carry;
* ``installed``: ``fleet agent run`` from harmony-fleet installed (not editable, no extras) into
  a fresh venv;
* ``artifact``: the agent from its single-file artifact (built by that venv's ``fleet artifact
  build``), installed in a prefix (``versions/1.0.0/agent``, ``current``) and started the way the
  unit and the supervisor start it (``LaunchSpec``), warm (extracted once before);
* ``candidate``: version 2.0.0's artifact started as the candidate of an upgrade of that device,
  with the argument vector the main instance gives its candidates.

The agents run as upgradable mains do on a device (``--prefix``, a pinned trust root, log
shipping on). For each process: RSS after ``--idle`` seconds from its first heartbeat; CPU
seconds per hour extrapolated from the window between one second after every process's first
heartbeat and that moment (scheduler nanoseconds of every thread, ``/proc/PID/task/*/schedstat``);
exec to first heartbeat (from just before ``exec`` to the heartbeat's arrival at a subscriber).
And the artifact's size.

The last line is one JSON object; ``targets`` holds the acceptance checks (ratios against the
floor measured in the same run, because this machine is noisy): artifact RSS <= 1.2x, installed
RSS <= 1.3x, candidate RSS <= 1.2x, CPU <= 1.5x (artifact and installed), exec to first heartbeat
<= 0.5 s (artifact and installed), artifact <= 3 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmony_fleet.adapters.device.launch import LaunchSpec, child_env
from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import Role
from harmony_fleet.testing.signed_repo import Repo

REPO = Path(__file__).resolve().parents[1]
FLOOR_SCRIPT = REPO / "bench" / "floor_agent.py"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
MIB = 1024 * 1024
ARTIFACT_LIMIT_BYTES = 3_000_000
UPGRADE_ID = "bench-upgrade-1"


def log(message: str) -> None:
    print(f"[footprint] {message}", file=sys.stderr, flush=True)


# -- environments ---------------------------------------------------------------------------------
def venv(path: Path, requirements: list[str], *, refresh: tuple[str, ...] = ()) -> Path:
    """A venv at ``path`` with exactly ``requirements`` installed (made again when they change);
    its python.

    ``refresh`` is reinstalled every time, without its dependencies (the package under test, so
    that a kept ``--workdir`` measures the current sources)."""
    python = path / "bin" / "python"
    wanted = "\n".join(requirements)
    recorded = path / "bench-requirements.txt"
    if not recorded.is_file() or recorded.read_text() != wanted:
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        pip(python, "install", *requirements)
        recorded.write_text(wanted)
    elif refresh:
        pip(python, "install", "--no-deps", "--force-reinstall", *refresh)
    return python


def pip(python: Path, *args: str) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"pip {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def build_artifact(fleet: Path, version: str, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(fleet), "artifact", "build", "--version", version, "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    manifest: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return manifest


def importable(python: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(python), "-c", code], check=False).returncode == 0


# -- measuring a process ---------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of ``pid`` (nanosecond resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


@dataclass
class Measured:
    name: str
    argv: list[str]
    device: str
    role: str = Role.MAIN.value
    proc: subprocess.Popen[bytes] | None = None
    exec_at: float = 0.0
    first_beat_at: float | None = None
    beats: int = 0
    cpu0: float = 0.0
    t0: float = 0.0
    rss: int = 0
    cpu_per_hour: float = 0.0

    def start(self, workdir: Path, env: dict[str, str]) -> None:
        with open(workdir / f"{self.name}.log", "wb") as out:
            self.exec_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def figures(self) -> dict[str, Any]:
        assert self.first_beat_at is not None
        return {
            "rss_mib": round(self.rss / MIB, 2),
            "cpu_s_per_hour": round(self.cpu_per_hour, 2),
            "exec_to_heartbeat_s": round(self.first_beat_at - self.exec_at, 3),
            "heartbeats": self.beats,
        }


# -- the run ---------------------------------------------------------------------------------------
async def measure(
    processes: list[Measured],
    server: EmbeddedNats,
    args: argparse.Namespace,
    workdir: Path,
    env: dict[str, str],
) -> None:
    by_key = {(p.device, p.role): p for p in processes}
    nc = await connect(server.client_options(name="footprint-bench"))

    async def on_beat(msg: Any) -> None:
        now = time.monotonic()
        try:
            beat = json.loads(msg.data)
        except ValueError:
            return
        p = by_key.get((beat.get("device_id"), beat.get("role")))
        if p is None:
            return
        p.beats += 1
        if p.first_beat_at is None:
            p.first_beat_at = now

    await nc.subscribe("fleet.*.heartbeat", cb=on_beat)
    await nc.flush()
    try:
        for p in processes:  # one at a time: a device starts one agent, not four at once
            p.start(workdir, env)
            deadline = time.monotonic() + 60
            while p.first_beat_at is None:
                if not p.alive() or time.monotonic() > deadline:
                    raise SystemExit(f"no first heartbeat from {p.name}: see {workdir}/*.log")
                await asyncio.sleep(0.002)
        log("every process heartbeats; idling")
        await asyncio.sleep(1.0)
        for p in processes:
            p.t0, p.cpu0 = time.monotonic(), cpu_seconds(p.pid)
        for p in sorted(processes, key=lambda p: p.first_beat_at or 0.0):
            assert p.first_beat_at is not None
            await asyncio.sleep(max(0.0, p.first_beat_at + args.idle - time.monotonic()))
            if not p.alive():
                raise SystemExit(f"{p.name} exited: see {workdir}/{p.name}.log")
            p.rss = rss_bytes(p.pid)
            p.cpu_per_hour = (cpu_seconds(p.pid) - p.cpu0) / (time.monotonic() - p.t0) * 3600
    finally:
        for p in processes:
            p.stop()
        await nc.close()


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def report(
    processes: list[Measured], artifact_bytes: int, args: argparse.Namespace
) -> dict[str, Any]:
    figures = {p.name: p.figures() for p in processes}
    floor = figures["floor"]
    ratios = {
        f"{name}_{what}": ratio(figures[name][key], floor[key])
        for name in ("installed", "artifact", "candidate")
        for what, key in (("rss", "rss_mib"), ("cpu", "cpu_s_per_hour"))
    }
    targets = {
        "artifact_rss_le_1.2x": ratios["artifact_rss"] <= 1.2,
        "installed_rss_le_1.3x": ratios["installed_rss"] <= 1.3,
        "candidate_rss_le_1.2x": ratios["candidate_rss"] <= 1.2,
        "artifact_cpu_le_1.5x": ratios["artifact_cpu"] <= 1.5,
        "installed_cpu_le_1.5x": ratios["installed_cpu"] <= 1.5,
        "artifact_exec_to_heartbeat_le_0.5s": figures["artifact"]["exec_to_heartbeat_s"] <= 0.5,
        "installed_exec_to_heartbeat_le_0.5s": figures["installed"]["exec_to_heartbeat_s"] <= 0.5,
        "artifact_le_3MB": artifact_bytes <= ARTIFACT_LIMIT_BYTES,
    }
    return {
        "bench": "agent_footprint",
        "idle_s": args.idle,
        "interval_s": args.interval,
        **figures,
        "artifact_bytes": artifact_bytes,
        "ratios": ratios,
        "targets": targets,
        "ok": all(targets.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle before RSS")
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval")
    parser.add_argument("--workdir", type=Path, help="keep the venvs here between runs")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="footprint-"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        asyncio.run(run(args, workdir))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


async def run(args: argparse.Namespace, workdir: Path) -> None:
    log(f"installing harmony-fleet into {workdir}/pkg")
    pkg = venv(workdir / "pkg", [str(REPO)], refresh=(str(REPO),))
    dist = workdir / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    old = build_artifact(pkg.parent / "fleet", "1.0.0", dist)
    new = build_artifact(pkg.parent / "fleet", "2.0.0", dist)
    log(f"artifact: {old['size']} bytes, {len(old['dependencies'])} distributions")
    floor_python = venv(workdir / "floor", list(old["dependencies"]))
    if importable(floor_python, "aiohttp"):
        raise SystemExit("the floor's venv holds aiohttp: nats-py would import it")

    prefix = workdir / "device" / "opt"
    shutil.rmtree(workdir / "device", ignore_errors=True)
    for manifest in (old, new):
        target = prefix / "versions" / manifest["version"] / "agent"
        target.parent.mkdir(parents=True)
        shutil.copy2(dist / manifest["file"], target)
    (prefix / "current").symlink_to(Path("versions") / "1.0.0")
    root = workdir / "root.json"
    root.write_bytes(Repo().root_json())

    with EmbeddedNats(store_dir=workdir / "nats", log_file=workdir / "nats.log") as server:
        server.start()
        ca = str(server.auth.ca_file)

        def device(name: str) -> tuple[str, ...]:
            creds = server.issue("device", name, workdir / f"{name}.creds")
            return ("--nats", server.url, "--nats-creds", str(creds), "--nats-tls-ca", ca)

        env = child_env({"XDG_CONFIG_HOME": str(workdir / "config")})
        # A device writes bytecode beside an artifact's extracted sources on their first import;
        # without it every start compiles the agent again (seconds, not a tenth of one).
        env.pop("PYTHONDONTWRITEBYTECODE", None)

        def launch(name: str, python: str, state: str) -> LaunchSpec:
            return LaunchSpec(
                python=python,
                device_id=name,
                state_dir=workdir / "device" / state,
                nats_args=device(name),
                extra_args=(
                    *("--heartbeat-interval", str(args.interval), "--executor", "process"),
                    *("--prefix", str(prefix), "--trust-root", str(root), "--log-json"),
                ),
            )

        agent = launch("bench-dev", BASE_PYTHON, "state")
        for version in ("1.0.0", "2.0.0"):
            # Warm, as on a device: a version runs its self-test (extraction, bytecode of the
            # agent's modules) before it ever runs as a candidate or a main.
            argv = agent.argv(prefix / "versions" / version / "agent", self_test=True)
            await asyncio.to_thread(subprocess.run, argv, check=True, capture_output=True, env=env)
        floor_args = device("bench-floor")
        fleet = str(pkg.parent / "fleet")
        installed = launch("bench-pkg", str(pkg), "pkg-state")
        floor_argv = [str(floor_python), str(FLOOR_SCRIPT), "--device-id", "bench-floor"]
        floor_argv += [*floor_args, "--interval", str(args.interval)]
        processes = [
            Measured("floor", floor_argv, "bench-floor"),
            Measured("installed", [fleet, *installed.agent_args()], "bench-pkg"),
            Measured("artifact", agent.argv(prefix / "current" / "agent"), "bench-dev"),
            Measured(
                "candidate",
                agent.argv(
                    prefix / "versions" / "2.0.0" / "agent",
                    role=Role.CANDIDATE,
                    upgrade_id=UPGRADE_ID,
                ),
                "bench-dev",
                role=Role.CANDIDATE.value,
            ),
        ]
        log(f"running {len(processes)} processes for {args.idle:g} s idle after each one's "
            f"first heartbeat")  # fmt: skip
        await measure(processes, server, args, workdir, env)
    result = report(processes, int(old["size"]), args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
