"""A recording, scriptable :class:`~harmony_fleet.core.upgrade.executor.UpgradeExecutor`.

It keeps a small model of the device (which versions are on disk, where ``current`` points,
whether a candidate runs) so a test can check the invariants that matter — ``current`` moved
only after the stop, a revert restored it — and not merely that methods were called.

Scripting, all optional and set as attributes before (or during) a test:

* ``fail["<method>"] = exc`` makes that method raise (``fail_times`` bounds how often);
* ``hang`` holds a method until ``release(name)``: ``hang.add("stage")`` simulates a stalled
  download, ``hang.add("self_test")`` a self-test that never returns;
* ``self_test_outcome`` is what ``self_test`` returns;
* :meth:`exit_candidate` makes the running candidate exit with a code and log lines;
* ``progress`` lists what ``stage`` reports through the callback (before hanging or failing).

:meth:`wait_for_call` waits (on a condition, not a sleep) until a method has been called.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import Progress, UpgradeMarker
from harmony_fleet.core.upgrade.executor import CandidateHandle, ProcessOutcome, ProgressCallback

_STOPPED = ProcessOutcome(exit_code=-15, log_tail=("stopped by the old agent",))


@dataclass(frozen=True)
class Call:
    """One recorded call: the method name and its interesting arguments."""

    name: str
    args: tuple[Any, ...] = ()


@dataclass
class _Candidate:
    handle: CandidateHandle
    exited: asyncio.Future[ProcessOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class FakeExecutor:
    """Implements ``UpgradeExecutor`` in memory; see the module docstring for scripting."""

    def __init__(self, *, current: Version | None, versions: set[Version] | None = None) -> None:
        self.current = current
        self.versions: set[Version] = set(versions or ({current} if current else set()))
        self.staged: set[Version] = set()
        self.calls: list[Call] = []
        self.fail: dict[str, Exception] = {}
        self.fail_times: dict[str, int] = {}
        self.hang: set[str] = set()
        self.self_test_outcome = ProcessOutcome(exit_code=0)
        self.progress: list[Progress] = []
        self.swaps: list[Version] = []
        self.candidates_started = 0
        self._candidate: _Candidate | None = None
        self._gates: dict[str, asyncio.Event] = {}
        self._called = asyncio.Condition()

    # -- scripting helpers --------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    @property
    def candidate_running(self) -> bool:
        return self._candidate is not None and not self._candidate.exited.done()

    def release(self, name: str) -> None:
        """Let a hung method go on."""
        self.hang.discard(name)
        gate = self._gates.pop(name, None)
        if gate is not None:
            gate.set()

    def exit_candidate(self, exit_code: int | None, log_tail: tuple[str, ...] = ()) -> None:
        """The running candidate exits on its own (crash or clean exit)."""
        assert self._candidate is not None, "no candidate was started"
        if not self._candidate.exited.done():
            self._candidate.exited.set_result(
                ProcessOutcome(exit_code=exit_code, log_tail=log_tail)
            )

    async def wait_for_call(self, name: str, count: int = 1) -> None:
        async with self._called:
            await self._called.wait_for(lambda: self.names.count(name) >= count)

    async def _enter(self, name: str, *args: Any) -> None:
        await self._record(name, *args)
        await self._gate(name)

    async def _record(self, name: str, *args: Any) -> None:
        async with self._called:
            self.calls.append(Call(name, args))
            self._called.notify_all()

    async def _gate(self, name: str) -> None:
        if name in self.hang:
            gate = self._gates.setdefault(name, asyncio.Event())
            await gate.wait()
        exc = self.fail.get(name)
        if exc is not None:
            left = self.fail_times.get(name)
            if left is not None:
                if left <= 1:
                    del self.fail[name]
                    self.fail_times.pop(name)
                else:
                    self.fail_times[name] = left - 1
            raise exc

    # -- the UpgradeExecutor protocol -----------------------------------------------------------

    async def self_heal_layout(self) -> Version:
        await self._enter("self_heal_layout")
        assert self.current is not None, "fake layout has no current version"
        return self.current

    async def current_version(self) -> Version | None:
        await self._enter("current_version")
        return self.current

    async def stage(self, marker: UpgradeMarker, progress: ProgressCallback) -> None:
        await self._record("stage", marker.upgrade_id, marker.target_version)
        for p in self.progress:
            progress(p)  # reported before a scripted hang or failure, like a real download
        await self._gate("stage")
        target = marker.target_version
        if target not in self.versions:
            self.versions.add(target)
            self.staged.add(target)

    async def cleanup_staging(self, version: Version) -> None:
        await self._enter("cleanup_staging", version)
        if version in self.staged and version != self.current:
            self.versions.discard(version)
            self.staged.discard(version)

    async def self_test(self, marker: UpgradeMarker, timeout_s: float) -> ProcessOutcome:
        await self._enter("self_test", marker.upgrade_id, timeout_s)
        return self.self_test_outcome

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        await self._enter("start_candidate", marker.upgrade_id)
        handle = CandidateHandle(
            upgrade_id=marker.upgrade_id,
            version=marker.target_version,
            ref=f"candidate-{marker.upgrade_id}",
        )
        self._candidate = _Candidate(handle)
        self.candidates_started += 1
        return handle

    async def candidate_alive(self, handle: CandidateHandle) -> bool:
        await self._enter("candidate_alive", handle.upgrade_id)
        return self.candidate_running

    async def candidate_exit(self, handle: CandidateHandle) -> ProcessOutcome:
        await self._enter("candidate_exit", handle.upgrade_id)
        assert self._candidate is not None
        return await asyncio.shield(self._candidate.exited)

    async def stop_candidate(self, upgrade_id: UpgradeId) -> ProcessOutcome | None:
        await self._enter("stop_candidate", upgrade_id)
        return self._stop()

    def _stop(self) -> ProcessOutcome | None:
        if not self.candidate_running:
            return None
        assert self._candidate is not None
        self._candidate.exited.set_result(_STOPPED)
        return _STOPPED

    async def swap_current(self, version: Version) -> None:
        await self._enter("swap_current", version)
        assert version in self.versions, f"swap to {version}, which is not on disk"
        self.current = version
        self.swaps.append(version)
        self.staged.discard(version)

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
        await self._enter("revert", upgrade_id, previous, target)
        self._stop()
        self.current = previous
        if target in self.staged and target != previous:
            self.versions.discard(target)
            self.staged.discard(target)
