"""The upgrade executor for hosts without systemd: candidates are detached processes.

The on-disk half of an upgrade (self-heal, the verified download into ``versions/<v>/``, the
ownership note that makes a revert byte-identical, the swap) and the bounded self-test are the
systemd executor's too and live in :mod:`._staging`; what is particular to this executor is how a
candidate runs and how it is found again. Where things live (``run_dir`` is the caller's choice;
keep it outside ``<prefix>``, whose tree a revert restores byte for byte)::

    <prefix>/versions/.staging-<v>/agent   a download in progress (resumable)
    <prefix>/versions/.owner-<v>           the upgrade that created versions/<v> (until commit)
    <prefix>/versions/<v>/agent            the verified, executable artifact
    <run_dir>/candidate-<upgrade_id>.log   the candidate's output, whole, kept after it ends
    <run_dir>/candidate-<upgrade_id>.pid   {"pid", "start_time", ...}, written atomically

Why a pid file *and* a scan of ``/proc``: the agent may be killed at any moment and its
successor must still be able to stop the candidate (ADR-022, restart table). The pid file, with
the process start time from ``/proc/<pid>/stat``, names the candidate even after the pid has been
reused by something else. It can only be written after the process exists, so a crash in
between leaves a candidate without one; the scan finds that candidate by its command line, which
:class:`LaunchSpec` makes unique (``--device-id D --state-dir S ... --role candidate
--upgrade-id U``). Everything that stops or watches a candidate looks at both.

A candidate is detached: its own session (so no signal to the agent's process group reaches it,
and the whole group can be signalled), stdin from ``/dev/null``, output to its log file. It
outlives the agent that started it; after a commit the new main stops it.

Every blocking step (fork/exec, file writes with fsync, ``/proc`` reads) runs in a worker
thread; exits are awaited through a pidfd on the event loop (see :mod:`._proc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from harmony_fleet.adapters.executors._proc import (
    ProcId,
    Tracked,
    exit_note,
    find,
    is_running,
    spawn,
    tail_lines,
)
from harmony_fleet.adapters.executors._staging import Staging, run_bounded
from harmony_fleet.adapters.executors.launch import LaunchSpec
from harmony_fleet.adapters.http import DEFAULT_POLICY, DownloadPolicy
from harmony_fleet.adapters.os import AgentLayout, DiskError
from harmony_fleet.adapters.os._fs import write_atomic
from harmony_fleet.contracts.heartbeat import Role
from harmony_fleet.contracts.ids import UpgradeId, Version, upgrade_id, version
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade.executor import CandidateHandle, ProcessOutcome, ProgressCallback
from harmony_fleet.errors import NotFound, Timeout

log = logging.getLogger(__name__)

#: Lines of output kept in an outcome: the self-test prints one line per check; a candidate's
#: last lines usually hold its traceback.
SELF_TEST_TAIL = 20
CANDIDATE_TAIL = 50
#: Seconds between SIGTERM and SIGKILL when stopping a candidate (the agent drains NATS in 2 s).
STOP_GRACE_S = 5.0
_NOTE = "[harmony-fleet]"


class ProcessExecutor:
    """:class:`~harmony_fleet.core.upgrade.executor.UpgradeExecutor` with detached processes.

    ``running_version`` is the version of the agent that owns this executor (used to heal a
    first install). ``env`` adds to the environment children inherit; ``PYTHONUNBUFFERED=1``
    is always set so that a child killed on a timeout has not lost its last lines in a buffer.
    """

    def __init__(
        self,
        layout: AgentLayout,
        launch: LaunchSpec,
        *,
        run_dir: Path,
        running_version: str,
        download_policy: DownloadPolicy | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.layout = layout
        self.launch = launch
        self.run_dir = run_dir
        self.running_version = version(running_version)
        self.staging = Staging(layout, self.running_version, download_policy or DEFAULT_POLICY)
        self.stop_grace_s = stop_grace_s
        self._extra_env = dict(env or {})
        self._children: dict[UpgradeId, Tracked] = {}
        self._forget_lock = threading.Lock()

    # -- where things are -----------------------------------------------------------------------

    def pid_file(self, uid: str) -> Path:
        return self.run_dir / f"candidate-{upgrade_id(uid)}.pid"

    def candidate_log(self, uid: str) -> Path:
        return self.run_dir / f"candidate-{upgrade_id(uid)}.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self._extra_env, "PYTHONUNBUFFERED": "1"}

    # -- the on-disk half and the self-test: shared with the systemd executor (._staging) ------

    async def self_heal_layout(self) -> Version:
        return await self.staging.self_heal()

    async def current_version(self) -> Version | None:
        return await self.staging.current_version()

    async def stage(self, marker: UpgradeMarker, progress: ProgressCallback) -> None:
        await self.staging.stage(marker, progress)
        log.info(
            "staged", extra={"version": marker.target_version, "upgrade_id": marker.upgrade_id}
        )

    async def cleanup_staging(self, version: Version) -> None:
        await self.staging.cleanup(version)

    async def swap_current(self, version: Version) -> None:
        await self.staging.swap(version)

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
        await self.stop_candidate(upgrade_id)  # raises if it survives: the revert is retried
        await self.staging.revert(upgrade_id=upgrade_id, previous=previous, target=target)

    async def self_test(self, marker: UpgradeMarker, timeout_s: float) -> ProcessOutcome:
        v = version(marker.target_version)
        artifact = await self._existing_artifact(v)
        outcome = await run_bounded(
            self.launch.argv(artifact, self_test=True),
            timeout_s,
            env=self._env(),
            log_lines=SELF_TEST_TAIL,
        )
        if outcome.timed_out:
            note = f"{_NOTE} self-test killed after {timeout_s:g} s"
            outcome = dataclasses.replace(outcome, log_tail=(*outcome.log_tail, note))
        log.info(
            "self-test ended",
            extra={"version": v, "exit_code": outcome.exit_code, "timed_out": outcome.timed_out},
        )
        return outcome

    async def _existing_artifact(self, v: Version) -> Path:
        path = self.staging.artifact(v)
        if not await asyncio.to_thread(path.is_file):
            raise NotFound(f"version {v} is not staged: {path} does not exist")
        return path

    # -- candidate ------------------------------------------------------------------------------

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        v = version(marker.target_version)
        uid = upgrade_id(marker.upgrade_id)
        running = await asyncio.to_thread(self._find, uid)
        if running:  # idempotent: a second call (or a restarted agent) adopts the first one
            return CandidateHandle(upgrade_id=uid, version=v, ref=str(running[0].pid))
        artifact = await self._existing_artifact(v)
        argv = self.launch.argv(artifact, role=Role.CANDIDATE, upgrade_id=uid)
        await asyncio.to_thread(self.run_dir.mkdir, parents=True, exist_ok=True)
        # The header names no argument: NATS URLs and credential paths stay out of the log.
        popen = await asyncio.to_thread(
            spawn,
            argv,
            log=self.candidate_log(uid),
            env=self._env(),
            header=f"candidate {v} for upgrade {uid} starting from {artifact}",
        )
        child = Tracked.child(popen)
        self._children[uid] = child
        try:
            await asyncio.to_thread(self._write_pid_file, uid, v, child.ident)
        except BaseException:
            child.signal_group(signal.SIGKILL)  # untracked, it could never be stopped later
            self._children.pop(uid, None)
            await asyncio.to_thread(child.kill_leftovers)
            raise
        log.info("candidate started", extra={"version": v, "upgrade_id": uid, "pid": child.pid})
        return CandidateHandle(upgrade_id=uid, version=v, ref=str(child.pid))

    def _write_pid_file(self, uid: UpgradeId, v: Version, ident: ProcId) -> None:
        record = {
            "pid": ident.pid,
            "start_time": ident.start_time,
            "upgrade_id": uid,
            "version": v,
            "started_at": time.time(),
        }
        try:
            write_atomic(self.pid_file(uid), json.dumps(record).encode())
        except OSError as exc:
            raise DiskError(f"write pid file of candidate {uid}", exc) from exc

    def _read_pid_file(self, uid: UpgradeId) -> ProcId | None:
        try:
            record = json.loads(self.pid_file(uid).read_bytes())
            return ProcId(int(record["pid"]), int(record["start_time"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("bad candidate pid file", extra={"upgrade_id": uid, "error": str(exc)})
            return None

    def _is_candidate_argv(self, uid: UpgradeId) -> Callable[[list[str]], bool]:
        expected = self.launch.agent_args(role=Role.CANDIDATE, upgrade_id=uid)

        def match(argv: list[str]) -> bool:
            return (
                len(argv) == 2 + len(expected)
                and argv[2:] == expected
                and Path(argv[1]).parent.parent == self.layout.versions_dir
            )

        return match

    def _find(self, uid: UpgradeId) -> list[Tracked]:
        """Every running candidate of ``uid``: our child, the pid file's, the command line's."""
        found: list[Tracked] = []
        child = self._children.get(uid)
        if child is not None and child.running():
            found.append(child)
        recorded = self._read_pid_file(uid)
        if recorded is not None and is_running(recorded):
            found.append(Tracked(recorded))
        found.extend(Tracked(ident) for ident in find(self._is_candidate_argv(uid)))
        unique: dict[int, Tracked] = {}
        for tracked in found:
            unique.setdefault(tracked.pid, tracked)  # our own child first: it has the exit code
        return list(unique.values())

    def _forget(self, uid: UpgradeId) -> None:
        """After the candidate ended: reap our child, drop the pid file; the log stays.

        Serialised: ``candidate_exit`` and ``stop_candidate`` may both get here, and the group
        may only be signalled while the child is not reaped yet.
        """
        with self._forget_lock:
            child = self._children.get(uid)
            if child is not None:
                if child.running():
                    return  # survived SIGKILL (uninterruptible I/O): keep tracking it
                child.kill_leftovers()
                self._children.pop(uid, None)
            with contextlib.suppress(FileNotFoundError):
                self.pid_file(uid).unlink()

    def _outcome(self, uid: UpgradeId, child: Tracked | None) -> ProcessOutcome:
        if child is not None and child.popen is not None:
            code, notes = exit_note(child.popen.returncode)
        else:
            code, notes = None, (f"{_NOTE} exit code unknown: started by an earlier agent process",)
        tail = tail_lines(self.candidate_log(uid), CANDIDATE_TAIL)
        return ProcessOutcome(exit_code=code, log_tail=(*tail, *notes))

    async def candidate_alive(self, handle: CandidateHandle) -> bool:
        return bool(await asyncio.to_thread(self._find, handle.upgrade_id))

    async def candidate_exit(self, handle: CandidateHandle) -> ProcessOutcome:
        uid = handle.upgrade_id
        child = self._children.get(uid)
        if child is not None:
            await child.wait(None)
        else:
            for tracked in await asyncio.to_thread(self._find, uid):
                await tracked.wait(None)
        await asyncio.to_thread(self._forget, uid)
        outcome = await asyncio.to_thread(self._outcome, uid, child)
        log.info("candidate exited", extra={"upgrade_id": uid, "exit_code": outcome.exit_code})
        return outcome

    async def stop_candidate(self, upgrade_id: UpgradeId) -> ProcessOutcome | None:
        uid = upgrade_id
        found = await asyncio.to_thread(self._find, uid)
        child = self._children.get(uid)
        if not found:
            await asyncio.to_thread(self._forget, uid)
            return None
        await asyncio.gather(*(t.terminate(self.stop_grace_s) for t in found))
        still = [t.pid for t in found if t.running()]
        await asyncio.to_thread(self._forget, uid)
        if still:
            raise Timeout(f"candidate {uid} still runs after SIGTERM and SIGKILL: pids {still}")
        outcome = await asyncio.to_thread(self._outcome, uid, child)
        log.info("candidate stopped", extra={"upgrade_id": uid, "exit_code": outcome.exit_code})
        return outcome
