"""A recording, scriptable device: both seams of ``core.upgrade.device`` over one model.

:class:`FakeDevice` keeps a small model of the device (which versions are on disk, where
``current`` points, whether a candidate runs, the post-commit watch's notes) so a test can check
the invariants that matter — ``current`` moved only after the stop, a revert restored it — and
not merely that methods were called. It hands the driver its two seams, :attr:`FakeDevice.files`
(``DeviceFiles``) and :attr:`FakeDevice.runner` (``CandidateRunner``), which record into one
call log, so the order of calls across both is visible.

Scripting, all optional and set as attributes before (or during) a test:

* ``fail["<method>"] = exc`` makes that method raise (``fail_times`` bounds how often);
* ``hang`` holds a method until ``release(name)``: ``hang.add("stage")`` simulates a stalled
  download, ``hang.add("self_test")`` a self-test that never returns;
* ``self_test_outcome`` is what ``self_test`` returns;
* :meth:`FakeDevice.exit_candidate` makes the running candidate exit with a code and log lines;
* ``progress`` lists what ``stage`` reports through the callback (before hanging or failing);
* the watch: ``watched``, ``rollback`` (the launcher's note the files return), ``hashes``
  (artifact SHA-256 by version), ``since_commit_s``, ``remove`` (what garbage collection
  removes); ``armed``, ``ended`` and ``collected`` record what the driver asked.

:meth:`FakeDevice.wait_for_call` waits (on a condition, not a sleep) until a method was called.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from harmony_fleet.contracts.device_files import RollbackNote
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import Progress, UpgradeMarker
from harmony_fleet.core.upgrade.device import CandidateHandle, ProcessOutcome, ProgressCallback
from harmony_fleet.core.upgrade.effects import WatchPlan

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


class FakeDevice:
    """The model both fakes share; see the module docstring for scripting."""

    def __init__(
        self,
        *,
        current: Version | None,
        versions: set[Version] | None = None,
        watched: bool = False,
    ) -> None:
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
        self.watched = watched
        self.rollback: RollbackNote | None = None
        self.hashes: dict[Version, str] = {}
        self.since_commit_s: float | None = None
        self.remove: list[Version] = []
        self.armed: list[WatchPlan] = []
        self.ended: list[UpgradeId] = []
        self.collected: list[tuple[frozenset[Version], int]] = []
        self._candidate: _Candidate | None = None
        self._gates: dict[str, asyncio.Event] = {}
        self._called = asyncio.Condition()
        self.files = FakeDeviceFiles(self)
        self.runner = FakeCandidateRunner(self)

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

    async def enter(self, name: str, *args: Any) -> None:
        await self.record(name, *args)
        await self.gate(name)

    async def record(self, name: str, *args: Any) -> None:
        async with self._called:
            self.calls.append(Call(name, args))
            self._called.notify_all()

    async def gate(self, name: str) -> None:
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

    def stop(self) -> ProcessOutcome | None:
        if not self.candidate_running:
            return None
        assert self._candidate is not None
        self._candidate.exited.set_result(_STOPPED)
        return _STOPPED


class FakeDeviceFiles:
    """``DeviceFiles`` over a :class:`FakeDevice`."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device

    @property
    def watched(self) -> bool:
        return self.device.watched

    async def self_heal_layout(self) -> Version:
        await self.device.enter("self_heal_layout")
        assert self.device.current is not None, "fake layout has no current version"
        return self.device.current

    async def current_version(self) -> Version | None:
        await self.device.enter("current_version")
        return self.device.current

    async def stage(self, marker: UpgradeMarker, progress: ProgressCallback) -> None:
        d = self.device
        await d.record("stage", marker.upgrade_id, marker.target_version)
        for p in d.progress:
            progress(p)  # reported before a scripted hang or failure, like a real download
        await d.gate("stage")
        target = marker.target_version
        if target not in d.versions:
            d.versions.add(target)
            d.staged.add(target)

    async def verify_staged(self, version: Version) -> None:
        """Staged bytes do not change under the fake (tampering is an adapter's test)."""

    async def cleanup_staging(self, version: Version) -> None:
        d = self.device
        await d.enter("cleanup_staging", version)
        if version in d.staged and version != d.current:
            d.versions.discard(version)
            d.staged.discard(version)

    async def swap_current(self, version: Version) -> None:
        d = self.device
        await d.enter("swap_current", version)
        assert version in d.versions, f"swap to {version}, which is not on disk"
        d.current = version
        d.swaps.append(version)
        d.staged.discard(version)

    async def revert(self, *, upgrade_id: UpgradeId, previous: Version, target: Version) -> None:
        d = self.device
        await d.enter("revert", upgrade_id, previous, target)
        assert not d.candidate_running, "the files were reverted under a running candidate"
        d.current = previous
        if target in d.staged and target != previous:
            d.versions.discard(target)
            d.staged.discard(target)

    async def arm_watch(self, plan: WatchPlan) -> None:
        await self.device.enter("arm_watch", plan.upgrade_id)
        self.device.armed.append(plan)

    async def end_watch(self, upgrade_id: UpgradeId) -> None:
        await self.device.enter("end_watch", upgrade_id)
        self.device.ended.append(upgrade_id)

    async def since_commit(self, upgrade_id: UpgradeId) -> float | None:
        await self.device.enter("since_commit", upgrade_id)
        return self.device.since_commit_s

    async def rollback_note(self) -> RollbackNote | None:
        await self.device.enter("rollback_note")
        return self.device.rollback

    async def artifact_sha256(self, version: Version) -> str | None:
        await self.device.enter("artifact_sha256", version)
        return self.device.hashes.get(version)

    async def collect_garbage(self, protect: frozenset[Version], keep: int) -> list[Version]:
        await self.device.enter("collect_garbage", protect, keep)
        self.device.collected.append((protect, keep))
        return self.device.remove


class FakeCandidateRunner:
    """``CandidateRunner`` over a :class:`FakeDevice`."""

    def __init__(self, device: FakeDevice) -> None:
        self.device = device

    async def self_test(self, marker: UpgradeMarker, timeout_s: float) -> ProcessOutcome:
        await self.device.enter("self_test", marker.upgrade_id, timeout_s)
        return self.device.self_test_outcome

    async def start_candidate(self, marker: UpgradeMarker) -> CandidateHandle:
        d = self.device
        await d.enter("start_candidate", marker.upgrade_id)
        handle = CandidateHandle(
            upgrade_id=marker.upgrade_id,
            version=marker.target_version,
            ref=f"candidate-{marker.upgrade_id}",
        )
        d._candidate = _Candidate(handle)
        d.candidates_started += 1
        return handle

    async def candidate_exit(self, handle: CandidateHandle) -> ProcessOutcome:
        d = self.device
        await d.enter("candidate_exit", handle.upgrade_id)
        assert d._candidate is not None
        return await asyncio.shield(d._candidate.exited)

    async def stop_candidate(self, upgrade_id: UpgradeId) -> ProcessOutcome | None:
        await self.device.enter("stop_candidate", upgrade_id)
        return self.device.stop()
