"""Benchmark: harmony-fleet's download() against ``curl -s URL | sha256sum`` on loopback.

Run: ``.venv/bin/python bench/download.py [--size-mib 512] [--small-mib 64] [--runs 5]``

What it does, all in one run (these machines are noisy, so only ratios within a run count):

1. Writes a ``--size-mib`` file and a ``--small-mib`` file of random bytes to a temp dir.
2. Serves them from a separate process (threaded ``http.server`` answering with
   ``socket.sendfile``), so the server is not the bottleneck; ``curl -o /dev/null`` is timed
   too to show the server's ceiling.
3. Times our download-and-verify (``download()`` with fsync and rename, destination on the
   same temp dir) in a child process per run; the child reports the time of the call itself
   (interpreter start-up excluded; it is reported separately as ``ours_wall_s``) and its peak
   RSS (``VmHWM``), also its RSS before the call.
4. Times ``curl -s URL | sha256sum`` as one shell pipeline.

Best of ``--runs`` for each. Progress goes to stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MIB = 1024 * 1024


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- server (runs in its own process) ---------------------------------------------------------


def serve(root: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = root / self.path.lstrip("/")
            try:
                f = path.open("rb")
            except OSError:
                self.send_error(404)
                return
            with f:
                size = os.fstat(f.fileno()).st_size
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.flush()
                self.connection.sendfile(f)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- child: one download() call, measured from inside -----------------------------------------


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def child(url: str, dest: str, sha256: str, size: int) -> None:
    from harmony_fleet.adapters.http import download

    before = vm_hwm_kib()
    started = time.perf_counter()
    asyncio.run(download(url, Path(dest), sha256, size))
    elapsed = time.perf_counter() - started
    print(json.dumps({"elapsed_s": elapsed, "hwm_kib": vm_hwm_kib(), "hwm_before_kib": before}))


# --- parent -----------------------------------------------------------------------------------


def make_file(path: Path, mib: int) -> str:
    hasher = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            block = os.urandom(MIB)
            hasher.update(block)
            f.write(block)
    return hasher.hexdigest()


def run_ours(url: str, dest: Path, sha256: str, size: int) -> dict[str, float]:
    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, str(dest), sha256, str(size)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - started
    data = json.loads(out.strip().splitlines()[-1])
    dest.unlink()
    return {
        "elapsed_s": data["elapsed_s"],
        "wall_s": wall,
        "peak_rss_mib": data["hwm_kib"] / 1024,
        "rss_before_mib": data["hwm_before_kib"] / 1024,
    }


def run_curl_sha(url: str, sha256: str) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        ["sh", "-c", f"curl -s {url} | sha256sum"], check=True, capture_output=True, text=True
    ).stdout
    elapsed = time.perf_counter() - started
    if out.split()[0] != sha256:
        raise SystemExit(f"curl pipeline got a wrong hash: {out!r}")
    return elapsed


def run_curl_null(url: str) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--small-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="temp dir (default: system)")
    parser.add_argument(
        "--dest-dir", type=Path, default=None, help="where ours writes (default: the temp dir)"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.child:
        url, dest, sha256, size = args.child
        child(url, dest, sha256, int(size))
        return
    if shutil.which("curl") is None or shutil.which("sha256sum") is None:
        raise SystemExit("curl and sha256sum are needed for the baseline")

    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=args.dir) as tmp:
        root = Path(tmp)
        srv_dir = root / "srv"
        srv_dir.mkdir()
        sizes = {"big": args.size_mib, "small": min(args.small_mib, args.size_mib)}
        digests = {}
        for name, mib in sizes.items():
            say(f"writing {mib} MiB test file ({name})")
            digests[name] = make_file(srv_dir / f"{name}.bin", mib)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(srv_dir)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            base = f"http://127.0.0.1:{port}"
            dest_dir = args.dest_dir or root
            results = bench(base, dest_dir, sizes, digests, args.runs)
            results["dest_dir_fs"] = fs_type(dest_dir)
        finally:
            server.terminate()
            server.wait()
    print(json.dumps(results))


def fs_type(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts, longest mount prefix)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mnt, fstype, *_ = line.split()
        if (resolved == mnt or resolved.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, kind = mnt, fstype
    return kind


def bench(
    base: str, root: Path, sizes: dict[str, int], digests: dict[str, str], runs: int
) -> dict[str, object]:
    big_url = f"{base}/big.bin"
    big_bytes = sizes["big"] * MIB
    run_curl_null(big_url)  # warm the page cache and the server
    ours: dict[str, list[dict[str, float]]] = {"big": [], "small": []}
    curl_sha: list[float] = []
    curl_null: list[float] = []
    for i in range(runs):
        for name in ("big", "small"):
            r = run_ours(
                f"{base}/{name}.bin", root / f"{name}.out", digests[name], sizes[name] * MIB
            )
            ours[name].append(r)
            say(
                f"run {i + 1}: ours {name} {sizes[name]} MiB in {r['elapsed_s']:.3f} s "
                f"({sizes[name] / r['elapsed_s']:.0f} MiB/s), peak RSS {r['peak_rss_mib']:.1f} MiB"
            )
        curl_sha.append(run_curl_sha(big_url, digests["big"]))
        curl_null.append(run_curl_null(big_url))
        say(
            f"run {i + 1}: curl|sha256sum {curl_sha[-1]:.3f} s "
            f"({sizes['big'] / curl_sha[-1]:.0f} MiB/s); curl -o /dev/null {curl_null[-1]:.3f} s"
        )
    best_ours = min(r["elapsed_s"] for r in ours["big"])
    best_curl = min(curl_sha)
    peak_big = max(r["peak_rss_mib"] for r in ours["big"])
    peak_small = max(r["peak_rss_mib"] for r in ours["small"])
    ratio = (big_bytes / best_ours) / (big_bytes / best_curl)
    return {
        "size_mib": sizes["big"],
        "small_mib": sizes["small"],
        "runs": runs,
        "aggregate": "best of runs (time), worst of runs (RSS)",
        "throughput_ratio": round(ratio, 3),
        "ours_mib_s": round(sizes["big"] / best_ours, 1),
        "curl_mib_s": round(sizes["big"] / best_curl, 1),
        "curl_raw_mib_s": round(sizes["big"] / min(curl_null), 1),
        "ours_wall_s": round(min(r["wall_s"] for r in ours["big"]), 3),
        "peak_rss_mib": {"big": round(peak_big, 1), "small": round(peak_small, 1)},
        "rss_before_download_mib": round(max(r["rss_before_mib"] for r in ours["big"]), 1),
        "targets_met": {
            "throughput_ratio_ge_0_9": ratio >= 0.9,
            "peak_rss_le_64_mib": max(peak_big, peak_small) <= 64,
            "rss_not_growing_with_size": peak_big - peak_small <= 4,
        },
    }


if __name__ == "__main__":
    main()
