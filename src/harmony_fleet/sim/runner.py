"""Several simulator processes (``fleet sim --processes P``), their progress and summary.

Each process runs a :class:`~harmony_fleet.sim.worker.SimWorker` for every P-th device, with
its own connection, and reports its counts every second on a queue; the parent adds them up,
hands them to ``progress`` and, at the end, returns the summary. With one process the worker
runs in the caller's process (no fork, nothing to pickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.errors import FleetError
from harmony_fleet.sim.config import SimConfig
from harmony_fleet.sim.worker import SimWorker

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]

REPORT_S = 1.0


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of the workers' summaries."""
    counts: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for part in parts:
        counts.update(part.get("counts", {}))
        versions.update(part.get("versions", {}))
    return {
        "devices": sum(p.get("devices", 0) for p in parts),
        "online": sum(p.get("online", 0) for p in parts),
        "upgrading": sum(p.get("upgrading", 0) for p in parts),
        "versions": dict(sorted(versions.items())),
        "counts": dict(sorted(counts.items())),
        "processes": len(parts),
        "errors": [e for p in parts for e in p.get("errors", [])],
    }


async def _serve(
    worker: SimWorker,
    stop: Callable[[], bool],
    report: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    done = asyncio.Event()
    task = asyncio.ensure_future(worker.run(done))
    try:
        while not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), REPORT_S)
            if worker.ready.is_set():
                report(worker.summary())
            if stop():
                done.set()
        summary = worker.summary()
        exc = task.exception()
        if exc is not None:
            summary["errors"] = [str(exc)]
        return summary
    finally:
        done.set()
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


def _process_main(
    config: SimConfig, options: NatsOptions, process: int, stop: Any, out: Any, parent: int
) -> None:
    logging.basicConfig(level=logging.WARNING, format="fleet sim[%(process)d]: %(message)s")
    worker = SimWorker(config, options, process=process)

    def over() -> bool:
        # The parent may be gone without a word (killed): a worker never outlives it.
        return bool(stop.is_set()) or os.getppid() != parent

    def report(summary: dict[str, Any]) -> None:
        out.put(("progress", process, summary))

    try:
        summary = asyncio.run(_serve(worker, over, report))
    except (FleetError, OSError) as exc:
        summary = {**worker.summary(), "errors": [str(exc)]}
    except KeyboardInterrupt:
        summary = worker.summary()
    out.put(("done", process, summary))


def run(
    config: SimConfig,
    options: NatsOptions,
    *,
    duration_s: float | None = None,
    progress: Progress | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run the simulation for ``duration_s`` (None: until ``stop()`` or Ctrl-C); the summary."""
    deadline = None if duration_s is None else time.monotonic() + duration_s

    def over() -> bool:
        return (deadline is not None and time.monotonic() >= deadline) or bool(stop and stop())

    if config.processes == 1:
        worker = SimWorker(config, options)
        summary = asyncio.run(
            _serve(worker, over, lambda s: progress(merge([s])) if progress else None)
        )
        return merge([summary])
    ctx = multiprocessing.get_context("spawn")
    halt = ctx.Event()
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=_process_main,
            args=(config, options, p, halt, out, os.getpid()),
            name=f"fleet-sim-{p}",
            daemon=True,
        )
        for p in range(config.processes)
    ]
    for proc in procs:
        proc.start()
    latest: dict[int, dict[str, Any]] = {}
    finished: dict[int, dict[str, Any]] = {}
    try:
        while len(finished) < len(procs):
            if over():
                halt.set()
            try:
                kind, process, summary = out.get(timeout=REPORT_S)
            except queue.Empty:
                if all(not p.is_alive() for p in procs):
                    break
                continue
            (finished if kind == "done" else latest)[process] = summary
            if kind == "progress" and progress is not None and len(latest) == len(procs):
                progress(merge(list(latest.values())))
    except KeyboardInterrupt:
        halt.set()
        for proc in procs:
            proc.join(10)
        with contextlib.suppress(Exception):
            while True:
                kind, process, summary = out.get(timeout=0.5)
                if kind == "done":
                    finished[process] = summary
    finally:
        halt.set()
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    parts = [
        finished.get(p, latest.get(p, {"errors": [f"process {p} died"]})) for p in range(len(procs))
    ]
    return merge(parts)
