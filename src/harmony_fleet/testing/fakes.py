"""In-memory status sink and local state store, scriptable to fail like the real ones do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from harmony_fleet.contracts.upgrade import AgentUpgradePhase, UpgradeStatus
from harmony_fleet.core.upgrade.records import LocalState


class MemoryStatusSink:
    """Records every status written; ``failures`` are raised by the next writes, in order.

    A failure listed as ``(exc, applied=True)`` is raised *after* the value was stored, like a
    KV put that timed out but landed (``OutcomeUnknown``). ``connected`` is what the client
    says about its server (set it to False for an outage the writes have not met yet).
    """

    def __init__(self) -> None:
        self.written: list[UpgradeStatus] = []
        self.attempts = 0
        self.failures: list[tuple[Exception, bool]] = []
        self.connected = True
        self._changed = asyncio.Condition()

    def fail_next(self, exc: Exception, *, applied: bool = False) -> None:
        self.failures.append((exc, applied))

    async def write(self, status: UpgradeStatus) -> None:
        self.attempts += 1
        async with self._changed:
            failure = self.failures.pop(0) if self.failures else None
            if failure is None or failure[1]:
                self.written.append(status)
            self._changed.notify_all()
        if failure is not None:
            raise failure[0]

    @property
    def latest(self) -> UpgradeStatus | None:
        return self.written[-1] if self.written else None

    @property
    def phases(self) -> list[AgentUpgradePhase]:
        """Phases written, consecutive repeats collapsed."""
        out: list[AgentUpgradePhase] = []
        for s in self.written:
            if not out or out[-1] is not s.phase:
                out.append(s.phase)
        return out

    async def wait_for(self, predicate: Callable[[UpgradeStatus], bool]) -> UpgradeStatus:
        """Wait until a written status satisfies ``predicate`` (wrap in a timeout)."""
        async with self._changed:
            while True:
                for s in self.written:
                    if predicate(s):
                        return s
                await self._changed.wait()

    async def wait_for_phase(self, phase: AgentUpgradePhase) -> UpgradeStatus:
        return await self.wait_for(lambda s: s.phase is phase)


class MemoryStateStore:
    """The local state file, in memory. ``fail_saves`` makes the next saves raise OSError."""

    def __init__(self, state: LocalState | None = None) -> None:
        self.state = state if state is not None else LocalState()
        self.saves = 0
        self.fail_saves = 0

    def load(self) -> LocalState:
        return self.state

    def save(self, state: LocalState) -> None:
        if self.fail_saves > 0:
            self.fail_saves -= 1
            raise OSError("disk full (scripted)")
        self.saves += 1
        self.state = state
