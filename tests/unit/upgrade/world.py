"""A pure model of one device for property tests: the machine plus a disk, a candidate process,
timers, the local state file, the status key and the launcher's post-commit watch, all driven
the way the real driver (and the supervisor) drive them.

Effects are applied to the model exactly as ``agent.upgrade.driver`` applies them to the
device; the effects on the local state file go through the driver's own reading of them
(``core.upgrade.records.remembered``); outcomes of slow work are chosen by the test. The world
records enough history to check the ADR-022 invariants after every step (:meth:`World.check`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from harmony_fleet.contracts.commands import ReplyCode
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import AgentUpgradePhase, UpgradeMarker
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.machine import ProtocolViolation, step
from harmony_fleet.core.upgrade.records import LocalState, memory_of, remembered
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import ErrorCode, TimerKind, UpgradeState
from harmony_fleet.core.upgrade.watch import RollbackNote, WatchReason

from .support import OLD, OWN

S = UpgradeState
TERMINAL = {
    AgentUpgradePhase.FAILED,
    AgentUpgradePhase.ROLLED_BACK,
    AgentUpgradePhase.SUCCEEDED,
    AgentUpgradePhase.SUPERSEDED,
}
_AFTER_COMMITTED = {
    AgentUpgradePhase.COMMITTED,
    AgentUpgradePhase.SUCCEEDED,
    AgentUpgradePhase.ROLLED_BACK,
}
_COMMITTED_ENDINGS = [
    [AgentUpgradePhase.COMMITTED, AgentUpgradePhase.SUCCEEDED],
    [AgentUpgradePhase.COMMITTED, AgentUpgradePhase.ROLLED_BACK],
]


@dataclass
class World:
    snap: Snapshot = field(
        default_factory=lambda: Snapshot.initial(running_version=OLD, instance_id=OWN)
    )
    current: Version = OLD
    versions: set[Version] = field(default_factory=lambda: {OLD})
    staged: set[Version] = field(default_factory=set)
    candidate: UpgradeId | None = None
    timers: dict[TimerKind, UpgradeId] = field(default_factory=dict)
    work: tuple[str, UpgradeId] | None = None
    local: LocalState = field(default_factory=LocalState)
    # fault switches for the next synchronous effect
    swap_fails: bool = False
    revert_fails: bool = False
    start_fails: bool = False
    # history, for the invariants
    statuses: list[fx.WriteStatus] = field(default_factory=list)
    swaps: list[tuple[UpgradeId, Version]] = field(default_factory=list)
    finished_at: dict[UpgradeId, int] = field(default_factory=dict)
    started_work: list[tuple[str, UpgradeId]] = field(default_factory=list)
    layout_before: dict[UpgradeId, tuple[Version, frozenset[Version]]] = field(default_factory=dict)
    fed: list[ev.Event] = field(default_factory=list)
    watch: fx.WatchPlan | None = None
    """The watch note on disk (the old agent writes it with the swap)."""
    rollback: RollbackNote | None = None
    """The launcher's rollback note on disk."""
    launcher_rollbacks: int = 0
    violations: int = 0
    restarts: int = 0
    problems: list[str] = field(default_factory=list)

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, event: ev.Event) -> None:
        queue: deque[ev.Event] = deque([event])
        while queue:
            e = queue.popleft()
            before = self.snap
            try:
                snap, effects = step(before, e)
            except ProtocolViolation:
                self.violations += 1
                continue
            self.fed.append(e)
            self._check_stop(before, e, snap, effects)
            self.snap = snap
            for effect in effects:
                if self.crash_in is not None:
                    if self.crash_in == 0:
                        # SIGKILL between two effects of one step: the rest never happens.
                        self.crash_in = None
                        self.restart()
                        return
                    self.crash_in -= 1
                follow = self._apply(before, e, effect)
                if follow is not None:
                    queue.append(follow)
            self.check()

    def restart(self) -> None:
        """SIGKILL the agent process; the service starts whatever ``current`` points at."""
        self.restarts += 1
        self.snap = Snapshot.initial(
            running_version=self.current, instance_id=OWN, memory=memory_of(self.local)
        )
        self.timers.clear()
        self.work = None
        self.feed(
            ev.AgentRestarted(
                record=self.local.in_flight, current_version=self.current, post_commit=self.rollback
            )
        )

    def launcher_rolls_back(self) -> None:
        """The new main crash-loops (or goes silent) inside its window: the launcher, not the
        agent, writes its note, points ``current`` back and starts the previous version."""
        plan = self.watch
        if plan is None or self.snap.running_version != plan.target or self.current != plan.target:
            return  # the launcher only judges runs of the watched target
        self.launcher_rollbacks += 1
        self.rollback = RollbackNote(
            upgrade_id=plan.upgrade_id,
            previous=plan.previous,
            target=plan.target,
            reason=WatchReason.CRASH_LOOP,
            detail="crashed 3 times",
            exit_codes=(3, 3, 3),
        )
        self.current = plan.previous
        self.restart()

    # -- the driver, modelled -------------------------------------------------------------------

    def _apply(self, before: Snapshot, cause: ev.Event, e: fx.Effect) -> ev.Event | None:
        local = remembered(self.local, e)  # the state file: the driver's own reading
        if local is not None:
            self.local = local
        match e:
            case fx.Stage(marker=m):
                uid = m.upgrade_id
                self._guard_finished(uid, "Stage")
                self.layout_before.setdefault(uid, (self.current, frozenset(self.versions)))
                self.work = ("stage", uid)
                self.started_work.append(("stage", uid))
            case fx.RunSelfTest(marker=m):
                self.work = ("self_test", m.upgrade_id)
            case fx.CancelWork():
                self.work = None
            case fx.StartCandidate(marker=m):
                uid = m.upgrade_id
                self._guard_finished(uid, "StartCandidate")
                self.work = None
                if self.start_fails:
                    return ev.CandidateStartFailed(upgrade_id=uid, detail="scripted")
                if self.candidate is not None and not self.dirty:
                    self.problems.append(f"second candidate started while {self.candidate} runs")
                self.candidate = uid
                return ev.CandidateStarted(upgrade_id=uid)
            case fx.StopCandidate():
                self.candidate = None
            case fx.SwapCurrent(upgrade_id=uid, version=v, watch=plan):
                if plan is not None:
                    self.watch = plan  # durable before the swap
                if not (
                    isinstance(cause, ev.StopReceived) and cause.upgrade_id == before.armed_for
                ):
                    self.problems.append(f"swap caused by {cause!r}, armed for {before.armed_for}")
                if self.swap_fails:
                    return ev.CommitFailed(upgrade_id=uid, detail="scripted")
                self.swaps.append((uid, v))
                self.current = v
                self.staged.discard(v)
                return ev.CommitDone(upgrade_id=uid)
            case fx.Revert(upgrade_id=uid, previous=prev, target=target):
                if self.revert_fails:
                    # From here on the device needs a person: layout checks no longer apply.
                    self.dirty = True
                    return ev.RevertFailed(upgrade_id=uid, detail="scripted")
                self.candidate = None
                self.current = prev
                if target in self.staged and target != prev:
                    self.versions.discard(target)
                    self.staged.discard(target)
                return ev.RevertDone(upgrade_id=uid)
            case fx.CleanupStaging(version=v):
                if v in self.staged and v != self.current:
                    self.versions.discard(v)
                    self.staged.discard(v)
            case fx.WriteStatus():
                self.statuses.append(e)
            case fx.EndWatch(upgrade_id=uid):
                if self.watch is not None and self.watch.upgrade_id == uid:
                    self.watch = None
                if self.rollback is not None and self.rollback.upgrade_id == uid:
                    self.rollback = None
            case fx.CollectGarbage(protect=protect):
                keep = {*protect, self.current, self.snap.running_version}
                if self.local.previous is not None:
                    keep.add(self.local.previous)
                if not keep >= {self.current, self.snap.running_version}:
                    self.problems.append(f"collection would remove what runs: {protect}")
                removed = self.versions - keep - self.staged
                self.collected |= removed
                self.versions -= removed
            case fx.RecordFinished(upgrade_id=uid):
                self.finished_at.setdefault(uid, len(self.statuses))
            case fx.HandOver():
                # The old agent exits; the service restarts on what current points at.
                self.pending_handover = True
            case fx.Resubmit(event=event):
                return event
            case fx.ScheduleTimer(kind=k, upgrade_id=uid):
                self.timers[k] = uid
            case fx.CancelTimer(kind=k):
                self.timers.pop(k, None)
        return None

    pending_handover: bool = False
    collected: set[Version] = field(default_factory=set)
    dirty: bool = False
    crash_in: int | None = None
    """Kill the agent after this many more effects (a torn step)."""

    def finish_work(self, ok: bool, hang: bool = False) -> None:
        """The background work in progress ends (staging or self-test)."""
        if self.work is None:
            return
        kind, uid = self.work
        self.work = None
        if kind == "stage":
            if ok:
                m = self.snap.marker
                if m is not None and m.upgrade_id == uid:
                    v = m.target_version
                    if v not in self.versions:
                        self.versions.add(v)
                        self.staged.add(v)
                self.feed(ev.StagingDone(upgrade_id=uid))
            else:
                self.feed(ev.StagingFailed(upgrade_id=uid, code=ErrorCode.DOWNLOAD_INTERRUPTED))
        elif hang:
            self.feed(ev.SelfTestTimedOut(upgrade_id=uid))
        elif ok:
            self.feed(ev.SelfTestPassed(upgrade_id=uid))
        else:
            self.feed(ev.SelfTestFailed(upgrade_id=uid, exit_code=1, log_tail=("bad",)))

    def fire(self, kind: TimerKind, stale: UpgradeId | None = None) -> None:
        uid = self.timers.pop(kind, None)
        if stale is not None:
            uid = stale
        if uid is not None:
            self.feed(ev.timer_event(kind, uid))

    def candidate_exits(self, code: int) -> None:
        if self.candidate is None:
            return
        uid, self.candidate = self.candidate, None
        self.feed(ev.CandidateExited(upgrade_id=uid, exit_code=code, log_tail=("exit",)))

    def after_handover(self) -> None:
        if self.pending_handover:
            self.pending_handover = False
            self.restart()

    # -- invariants -----------------------------------------------------------------------------

    def _guard_finished(self, uid: UpgradeId, what: str) -> None:
        if uid in self.finished_at:
            self.problems.append(f"{what} for finished upgrade {uid}")

    def _check_stop(
        self, before: Snapshot, e: ev.Event, after: Snapshot, effects: tuple[fx.Effect, ...]
    ) -> None:
        if not isinstance(e, ev.StopReceived):
            return
        replies = [x for x in effects if isinstance(x, fx.ReplyToStop)]
        if after.state is S.COMMITTING and before.state is not S.COMMITTING:
            if e.upgrade_id != before.armed_for:
                self.problems.append("commit began on a stop that did not match")
            return
        if any(r.code is not ReplyCode.OK for r in replies) and after != before:
            self.problems.append(f"refused stop changed the snapshot in {before.state}")

    def check(self) -> None:
        snap = self.snap
        if (snap.armed_for is not None) != (snap.state in (S.CUTOVER_READY, S.HOLDING)):
            self.problems.append(f"armed for {snap.armed_for} in {snap.state}")
        per_uid: dict[UpgradeId, int] = {}
        for uid, _ in self.swaps:
            per_uid[uid] = per_uid.get(uid, 0) + 1
        if any(n > 1 for n in per_uid.values()):
            self.problems.append(f"two swaps for one upgrade: {self.swaps}")
        # current always points at a version the device had, or a committed one
        committed = {v for _, v in self.swaps}
        if self.current not in committed | {OLD}:
            self.problems.append(f"current points at {self.current}, never committed")
        # terminal phases are terminal, per upgrade id
        last: dict[str, AgentUpgradePhase] = {}
        for s in self.statuses:
            prev = last.get(s.upgrade_id)
            if prev is not None and prev in TERMINAL and s.phase is not prev:
                self.problems.append(f"{s.upgrade_id}: {prev} then {s.phase}")
            if prev is AgentUpgradePhase.COMMITTED and s.phase not in _AFTER_COMMITTED:
                self.problems.append(f"{s.upgrade_id}: Committed then {s.phase}")
            if (
                prev is AgentUpgradePhase.COMMITTED
                and s.phase is AgentUpgradePhase.ROLLED_BACK
                and s.error_code is not ErrorCode.POST_COMMIT
            ):
                self.problems.append(f"{s.upgrade_id}: Committed then {s.error_code}")
            last[s.upgrade_id] = s.phase
        # nothing after the finish line, except rewriting the same phase, or a committed
        # upgrade ending its watch window (Committed, then Succeeded or a post-commit rollback)
        for uid, index in self.finished_at.items():
            later: list[AgentUpgradePhase] = []
            for s in self.statuses[index:]:
                if s.upgrade_id == uid and (not later or later[-1] is not s.phase):
                    later.append(s.phase)
            if len(later) > 1 and later not in _COMMITTED_ENDINGS:
                self.problems.append(f"{uid} changed phase after it finished: {later}")
        # garbage collection never removed the running, the current or the previous version
        kept = {self.current, self.snap.running_version, self.local.previous}
        if self.collected & kept:
            self.problems.append(f"collected {self.collected & kept}, which must be kept")
        if self.dirty:
            return
        # a rollback or failure restores the layout the upgrade found
        if snap.state in (S.ROLLED_BACK, S.FAILED) and snap.upgrade_id in self.layout_before:
            cur, vers = self.layout_before[snap.upgrade_id]
            if snap.upgrade.error_code is ErrorCode.POST_COMMIT:
                # After a commit the layout is the launcher's: current is back, the bad
                # version stays on disk for a person to look at (collection removes it later).
                if self.current != cur:
                    self.problems.append(f"post-commit rollback left current at {self.current}")
            elif (self.current, frozenset(self.versions)) != (cur, vers):
                self.problems.append(
                    f"{snap.state} left {self.current} {sorted(self.versions)}, "
                    f"found {cur} {sorted(vers)}"
                )
        # at rest, no candidate runs (unless the revert itself failed)
        at_rest = snap.state in (S.IDLE, S.ROLLED_BACK, S.FAILED)
        if at_rest and self.candidate is not None and not self.pending_handover:
            self.problems.append(f"candidate {self.candidate} still runs in {snap.state}")
        new_main = (
            snap.state in (S.COMMITTED, S.WATCHING, S.SUCCEEDED)
            and snap.running_version == snap.target
        )
        if new_main and self.candidate is not None:
            self.problems.append("new main runs beside the candidate")


def markers() -> list[UpgradeMarker]:
    from .support import marker

    return [
        marker("u1", "2.0.0"),
        marker("u2", "3.0.0"),
        marker("u3", "1.0.0"),  # the running version at first
        marker("u4", "2.0.0"),  # same target as u1, another id
    ]
