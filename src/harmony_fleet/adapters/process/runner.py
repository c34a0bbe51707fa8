"""The candidate runner for hosts without systemd: candidates are detached processes.

The files of an upgrade are ``adapters.device.files``' (the same on every platform); what is
particular here is how a candidate runs and how it is found again. Where things live
(``run_dir`` is the caller's choice; keep it outside ``<prefix>``, whose tree a revert restores
byte for byte)::

    <prefix>/versions/<v>/agent            the verified, executable artifact (staged)
    <run_dir>/candidate-<upgrade_id>.log   the candidate's output, whole, kept after it ends
    <run_dir>/candidate-<upgrade_id>.pid   a PidRecord (``.pidfile``), written atomically

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
thread; exits are awaited through a pidfd on the event loop (see :mod:`._proc`). The self-test
is a bounded child (:func:`.bounded.run_self_test`), as under systemd.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from harmony_fleet.adapters.device.launch import LaunchSpec, child_env
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.process._proc import (
    TrackedProcess,
    exit_note,
    find,
    is_running,
    spawn,
    tail_lines,
)
from harmony_fleet.adapters.process.bounded import NOTE, SelfTestChild
from harmony_fleet.adapters.process.pidfile import PidFile
from harmony_fleet.contracts.heartbeat import Role
from harmony_fleet.contracts.ids import UpgradeId, upgrade_id
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade.device import CandidateHandle, ProcessOutcome
from harmony_fleet.errors import Timeout

log = logging.getLogger(__name__)

#: Lines of a candidate's output kept in its outcome (the last ones usually hold its traceback).
CANDIDATE_TAIL = 50
#: Seconds between SIGTERM and SIGKILL when stopping a candidate (the agent drains NATS in 2 s).
STOP_GRACE_S = 5.0


class ProcessRunner(SelfTestChild):
    """:class:`~harmony_fleet.core.upgrade.device.CandidateRunner` with detached processes (the
    self-test is :class:`SelfTestChild`'s, as under systemd).

    ``env`` adds to the environment children inherit (:func:`child_env`).
    """

    def __init__(
        self,
        layout: AgentLayout,
        launch: LaunchSpec,
        *,
        run_dir: Path,
        stop_grace_s: float = STOP_GRACE_S,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.layout = layout
        self.launch = launch
        self.run_dir = run_dir
        self.stop_grace_s = stop_grace_s
        self._extra_env = dict(env or {})
        self._children: dict[UpgradeId, TrackedProcess] = {}
        self._forget_lock = threading.Lock()

    # -- where things are -----------------------------------------------------------------------

    def pid_file(self, uid: str) -> PidFile:
        return PidFile(self.run_dir / f"candidate-{upgrade_id(uid)}.pid")

    def candidate_log(self, uid: str) -> Path:
        return self.run_dir / f"candidate-{upgrade_id(uid)}.log"

    # -- candidate ------------------------------------------------------------------------------

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        v, uid = marker.target_version, marker.upgrade_id
        running = await asyncio.to_thread(self._find, uid)
        if running:  # idempotent: a second call (or a restarted agent) adopts the first one
            return CandidateHandle(upgrade_id=uid, version=v, ref=str(running[0].pid))
        artifact = await asyncio.to_thread(self.layout.staged_artifact, v)
        argv = self.launch.argv(artifact, role=Role.CANDIDATE, upgrade_id=uid)
        await asyncio.to_thread(self.run_dir.mkdir, parents=True, exist_ok=True)
        # The header names no argument: NATS URLs and credential paths stay out of the log.
        popen = await asyncio.to_thread(
            spawn,
            argv,
            log=self.candidate_log(uid),
            env=child_env(self._extra_env),
            header=f"candidate {v} for upgrade {uid} starting from {artifact}",
        )
        child = TrackedProcess.child(popen)
        self._children[uid] = child
        try:
            await asyncio.to_thread(
                self.pid_file(uid).write, child.ident, version=v, upgrade_id=uid
            )
        except BaseException:
            child.signal_group(signal.SIGKILL)  # untracked, it could never be stopped later
            self._children.pop(uid, None)
            await asyncio.to_thread(child.kill_leftovers)
            raise
        log.info("candidate started", extra={"version": v, "upgrade_id": uid, "pid": child.pid})
        return CandidateHandle(upgrade_id=uid, version=v, ref=str(child.pid))

    def _is_candidate_argv(self, uid: UpgradeId) -> Callable[[list[str]], bool]:
        expected = self.launch.agent_args(role=Role.CANDIDATE, upgrade_id=uid)

        def match(argv: list[str]) -> bool:
            return (
                len(argv) == 2 + len(expected)
                and argv[2:] == expected
                and Path(argv[1]).parent.parent == self.layout.versions_dir
            )

        return match

    def _find(self, uid: UpgradeId) -> list[TrackedProcess]:
        """Every running candidate of ``uid``: our child, the pid file's, the command line's."""
        found: list[TrackedProcess] = []
        child = self._children.get(uid)
        if child is not None and child.running():
            found.append(child)
        recorded = self.pid_file(uid).read()
        if recorded is not None and is_running(recorded):
            found.append(TrackedProcess(recorded))
        found.extend(TrackedProcess(ident) for ident in find(self._is_candidate_argv(uid)))
        unique: dict[int, TrackedProcess] = {}
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
            self.pid_file(uid).remove()

    def _outcome(self, uid: UpgradeId, child: TrackedProcess | None) -> ProcessOutcome:
        if child is not None and child.popen is not None:
            code, notes = exit_note(child.popen.returncode)
        else:
            code, notes = None, (f"{NOTE} exit code unknown: started by an earlier agent process",)
        tail = tail_lines(self.candidate_log(uid), CANDIDATE_TAIL)
        return ProcessOutcome(exit_code=code, log_tail=(*tail, *notes))

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
