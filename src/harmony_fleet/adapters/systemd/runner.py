"""``SystemdRunner``: the production candidate runner, candidates as transient systemd units.

The agent runs as the service's main unit (``fleet agent install`` writes it, ``Restart=always``).
An upgrade's candidate runs beside it as ``<service>-candidate-<upgrade_id>.service``, started
with ``systemd-run``, so:

* its output is in the journal (``journalctl -u UNIT``), which is where the log tail of a failed
  candidate comes from, even after the unit is gone;
* it lives in its own cgroup: the old main exiting after the commit does not take it down, and
  the candidate keeps heartbeating until the new main has started (no heartbeat gap);
* its name is derived from the ``upgrade_id`` alone, so any later agent process (the old one
  restarted, or the new main after the commit) can stop it without a saved handle;
* ``RemainAfterExit=yes`` keeps the unit loaded after its process ends, so the exit code can be
  read (``ExecMainCode``/``ExecMainStatus``) before the unit is removed. Stopping is therefore
  "signal the main process, read how it ended, then ``stop`` + ``reset-failed``", which leaves no
  unit behind;
* it runs in the sandbox of the main unit (:mod:`.sandbox`, the same settings the unit file
  has): an upgrade never widens what the agent may do;
* transient units live under ``/run``: a reboot removes a candidate with everything else, and
  the main unit boots whatever ``current`` points at (the old version unless the commit
  happened).

After the commit the old main exits 0; ``Restart=always`` starts ``current`` (the new version)
as the main unit, and the new main's driver stops the leftover candidate on resume through
:meth:`SystemdRunner.stop_candidate`.

The files of an upgrade are ``adapters.device.files``' (the same on every platform), and the
self-test is a bounded child as in process mode (``adapters.process.bounded``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.process.bounded import LOG_LINES, NOTE, SelfTestChild
from harmony_fleet.adapters.systemd.sandbox import sandbox
from harmony_fleet.adapters.systemd.systemctl import Systemd
from harmony_fleet.adapters.systemd.units import (
    DEFAULT_SERVICE,
    candidate_unit,
    passed_env,
    service_name,
)
from harmony_fleet.contracts.heartbeat import Role
from harmony_fleet.contracts.ids import UpgradeId
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade.device import CandidateHandle, ProcessOutcome
from harmony_fleet.errors import Timeout

log = logging.getLogger(__name__)

_STATE = ("LoadState", "ActiveState", "SubState", "MainPID", "ExecMainCode", "ExecMainStatus")
#: ``ExecMainCode`` values (``siginfo_t.si_code``): exited normally, killed, dumped core.
_CLD_EXITED, _CLD_KILLED, _CLD_DUMPED = 1, 2, 3


class SystemdRunner(SelfTestChild):
    """Implements :class:`~harmony_fleet.core.upgrade.device.CandidateRunner` with systemd."""

    def __init__(
        self,
        layout: AgentLayout,
        launch: LaunchSpec,
        *,
        service: str = DEFAULT_SERVICE,
        systemd: Systemd | None = None,
        log_lines: int = LOG_LINES,
        poll_s: float = 0.5,
        stop_timeout_s: float = 15.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.layout = layout
        self.launch = launch
        self.service = service_name(service)
        self.systemd = systemd or Systemd()
        self.log_lines = log_lines
        self.poll_s = poll_s
        self.stop_timeout_s = stop_timeout_s
        self._environ = environ

    def unit_for(self, uid: str) -> str:
        return candidate_unit(self.service, uid)

    # -- the candidate: a transient unit ----------------------------------------------------------

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        uid, target = marker.upgrade_id, marker.target_version
        unit = self.unit_for(uid)
        handle = CandidateHandle(upgrade_id=uid, version=target, ref=unit)
        state = await self.systemd.show(unit, *_STATE)
        if _loaded(state):
            if _running(state):
                log.info("candidate unit already running", extra={"unit": unit})
                return handle
            await self._remove(unit)  # an ended run of this upgrade: start afresh
        artifact = await asyncio.to_thread(self.layout.staged_artifact, target)
        argv = self.launch.argv(artifact, role=Role.CANDIDATE, upgrade_id=uid)
        environ = os.environ if self._environ is None else self._environ
        await self.systemd.run_transient(
            unit,
            argv,
            description=f"harmony-fleet agent {target}, candidate of upgrade {uid}",
            properties={
                "Type": "exec",  # the start fails here if the program cannot be executed
                "RemainAfterExit": "yes",  # keep the exit code readable after it ends
                "Restart": "no",
                "TimeoutStopSec": f"{self.stop_timeout_s:g}s",
                "SyslogIdentifier": f"{self.service}-candidate",
                **dict(sandbox(self.layout.prefix.absolute(), self.launch.state_dir.absolute())),
            },
            pass_env=passed_env(environ),
        )
        log.info("candidate unit started", extra={"unit": unit, "version": target})
        return handle

    async def candidate_exit(self, handle: CandidateHandle) -> ProcessOutcome:
        """Poll the unit until its main process has ended; how it ended and its last lines."""
        while True:
            state = await self.systemd.show(handle.ref, *_STATE)
            if not _running(state):
                return await self._outcome(handle.ref, state)
            await asyncio.sleep(self.poll_s)

    async def stop_candidate(self, upgrade_id: UpgradeId) -> ProcessOutcome | None:
        """SIGTERM the candidate (SIGKILL after ``stop_timeout_s``), read how it ended, remove
        the unit. None if no unit of that upgrade is loaded (never started, or a reboot)."""
        unit = self.unit_for(upgrade_id)
        state = await self.systemd.show(unit, *_STATE)
        if not _loaded(state):
            return None
        if _running(state):
            await self.systemd.kill(unit, "SIGTERM")
            state = await self._wait_ended(unit, self.stop_timeout_s)
            if _running(state):
                log.warning("candidate ignored SIGTERM; killing it", extra={"unit": unit})
                await self.systemd.kill(unit, "SIGKILL", main_only=False)
                state = await self._wait_ended(unit, self.stop_timeout_s)
                if _running(state):  # the caller (a revert) retries; never report a lie
                    raise Timeout(f"candidate unit {unit} still running after SIGKILL")
        outcome = await self._outcome(unit, state)
        await self._remove(unit)
        log.info("candidate unit stopped", extra={"unit": unit, "exit_code": outcome.exit_code})
        return outcome

    # -- helpers ------------------------------------------------------------------------------

    async def _wait_ended(self, unit: str, timeout_s: float) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            state = await self.systemd.show(unit, *_STATE)
            if not _running(state) or loop.time() >= deadline:
                return state
            await asyncio.sleep(min(0.1, self.poll_s))

    async def _outcome(self, unit: str, state: Mapping[str, str]) -> ProcessOutcome:
        tail = await self.systemd.journal_tail(unit, self.log_lines)
        code, status = _int(state.get("ExecMainCode")), _int(state.get("ExecMainStatus"))
        if not _loaded(state):
            return ProcessOutcome(exit_code=None, log_tail=(*tail, f"{NOTE} {unit} gone"))
        if code == _CLD_EXITED:
            return ProcessOutcome(exit_code=status, log_tail=tail)
        if code in (_CLD_KILLED, _CLD_DUMPED):
            note = f"{NOTE} {unit}: main process ended by signal {status}"
            return ProcessOutcome(exit_code=None, log_tail=(*tail, note)[-self.log_lines :])
        return ProcessOutcome(exit_code=None, log_tail=tail)

    async def _remove(self, unit: str) -> None:
        """``stop`` (ends anything left in the cgroup) and ``reset-failed``: the unit unloads."""
        await self.systemd.stop(unit, timeout_s=self.stop_timeout_s + self.systemd.timeout_s)
        await self.systemd.reset_failed(unit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while _loaded(await self.systemd.show(unit, "LoadState")):
            if loop.time() >= deadline:
                log.warning("candidate unit still loaded after stop", extra={"unit": unit})
                return
            await asyncio.sleep(0.1)


def _loaded(state: Mapping[str, str]) -> bool:
    return state.get("LoadState", "not-found") not in ("not-found", "")


def _running(state: Mapping[str, str]) -> bool:
    """A main process exists (``MainPID``), or systemd is still starting or stopping it."""
    if not _loaded(state):
        return False
    if _int(state.get("MainPID")) not in (None, 0):
        return True
    return state.get("ActiveState") in ("activating", "deactivating", "reloading")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
