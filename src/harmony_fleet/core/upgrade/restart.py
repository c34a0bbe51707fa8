"""What a fresh agent process does with the upgrade the previous process left in flight.

The restarted process may be the old version (the service restarted it after a crash) or the
new one (the old agent crashed after the swap, or handed over). It reads the persisted record
and where ``current`` points, then finishes or reverts so that exactly one agent runs, ``current``
points at the previous or a committed version, and the status ends in a terminal phase that
tells the truth (ADR-022, invariant 2).

The decision is a table, :data:`RESTART_RULES`, read top to bottom: the first row whose
condition holds decides. Each row names the state it leads to and says its condition in words,
so the generated state diagram (:mod:`.diagram`) draws every restart arrow with its reason, and
``machine.TABLE`` declares exactly the rows' targets.

After a commit the record also carries the post-commit watch: the new main resumes it
(``Watching`` for what is left of the window, then ``Succeeded``), and the previous
version, started again because its launcher rolled the new one back inside the window, finds
the launcher's rollback note and reports ``RolledBack`` (``post_commit``) with the new version's
exit codes and last log lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from harmony_fleet.contracts.local_state import InFlight
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.outcomes import (
    NO_EFFECTS,
    Result,
    begin_staging,
    fail,
    finish,
    roll_back,
    succeed,
)
from harmony_fleet.core.upgrade.records import remember_finished
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import (
    BLAMES_VERSION,
    CANDIDATE_STATES,
    COMMITTED_STATES,
    MAX_ATTEMPTS,
    WATCH_SETTLE_S,
    ErrorCode,
    TimerKind,
    UpgradeState,
)
from harmony_fleet.core.upgrade.watch import remaining, stable_for

S = UpgradeState


@dataclass(frozen=True, kw_only=True)
class Found:
    """What a fresh process finds: the record, ``current``, the launcher's note, itself."""

    record: InFlight
    event: ev.AgentRestarted
    base: Snapshot
    """This process's snapshot with the recorded upgrade in hand (state Idle)."""

    @property
    def was(self) -> UpgradeState:
        return self.record.state

    @property
    def swapped(self) -> bool:
        """Does ``current`` point at the recorded target?"""
        return self.event.current_version == self.record.target

    @property
    def committed(self) -> bool:
        return self.was in COMMITTED_STATES

    @property
    def note_for_it(self) -> bool:
        """Did the launcher leave a rollback note for this upgrade?"""
        note = self.event.post_commit
        return note is not None and note.upgrade_id == self.record.upgrade_id

    @property
    def runs_target(self) -> bool:
        return self.base.running_version == self.record.target

    @property
    def watch_window(self) -> bool:
        """Is there a post-commit watch for this upgrade on this device?"""
        return self.base.watch_window_s > 0

    @property
    def finished(self) -> bool:
        return self.record.upgrade_id in self.base.memory.finished


@dataclass(frozen=True, kw_only=True)
class RestartRule:
    """One row: when ``applies``, ``then`` decides, leading to ``to``."""

    to: UpgradeState
    when: str
    """The condition in words (the diagram shows it)."""
    applies: Callable[[Found], bool]
    then: Callable[[Found], Result]


def _reassert(found: Found) -> Result:
    """Ended: re-assert the terminal status (idempotent), never resume."""
    was, uid = found.was, found.record.upgrade_id
    stop: tuple[fx.Effect, ...] = ()
    if was is S.ROLLED_BACK:
        stop = (fx.StopCandidate(upgrade_id=uid), fx.EndWatch(upgrade_id=uid))
    done, book = finish(found.base.moved(was), blame=found.record.error_code in BLAMES_VERSION)
    return done, (*stop, *book)


def _rolled_back_after_commit(found: Found) -> Result:
    """The launcher returned the device to us inside the watch window: tell why, blame it."""
    note = found.event.post_commit
    assert note is not None
    uid = note.upgrade_id
    told = replace(
        found.base.upgrade,
        error_code=ErrorCode.POST_COMMIT,
        error_detail=f"{note.reason.value}: {note.detail}",
        candidate_exit_code=note.exit_code,
        candidate_log_tail=note.log_tail,
    )
    done, book = finish(found.base.moved(S.ROLLED_BACK, told), blame=True)
    return done, (fx.StopCandidate(upgrade_id=uid), *book, fx.EndWatch(upgrade_id=uid))


def _committed(found: Found) -> Snapshot:
    uid = found.record.upgrade_id
    memory = replace(found.base.memory, finished=remember_finished(found.base.memory.finished, uid))
    return replace(found.base, state=S.COMMITTED, memory=memory)


def _new_main(found: Found) -> Result:
    """We are the new main after the swap: stop the candidate, then watch (or succeed).

    The record stays (in Watching) until the watch ends, so that a restart inside it, of this
    version or of the previous one after a launcher rollback, knows where it is. The watch ends
    when the window has passed *and* this process has been up for :func:`stable_for` of it: a
    restart after the window (a crash loop slower than the window) must prove a steady run too.
    """
    committed = _committed(found)
    uid = found.record.upgrade_id
    stop = fx.StopCandidate(upgrade_id=uid)
    window = committed.watch_window_s
    if window <= 0:
        done, effects = succeed(committed)
        return done, (stop, *effects)
    watching = committed.moved(S.WATCHING)
    left = max(remaining(window, found.event.since_commit_s), stable_for(window))
    return watching, (
        stop,
        fx.RecordFinished(upgrade_id=uid),
        fx.PersistInFlight(record=watching.record()),
        watching.status(),
        fx.ScheduleTimer(kind=TimerKind.WATCH, delay_s=left + WATCH_SETTLE_S, upgrade_id=uid),
    )


def _hand_over_again(found: Found) -> Result:
    """We are the old version, restarted after the swap: hand over again."""
    committed = _committed(found)
    uid = found.record.upgrade_id
    return committed, (
        fx.PersistInFlight(record=committed.record()),
        fx.RecordFinished(upgrade_id=uid),
        committed.status(),
        fx.HandOver(upgrade_id=uid),
    )


def _reverted_by_hand(found: Found) -> Result:
    """Committed, yet ``current`` is back and no launcher says why: someone reverted it."""
    told = replace(
        found.base.upgrade,
        error_code=ErrorCode.LAYOUT_INCONSISTENT,
        error_detail=f"committed, but current points at {found.event.current_version}",
    )
    done, book = finish(found.base.moved(S.ROLLED_BACK, told), blame=False)
    return done, (fx.StopCandidate(upgrade_id=found.record.upgrade_id), *book)


def _finished_not_terminal(found: Found) -> Result:
    """Recorded as finished, yet the record never reached a terminal state: never rerun it."""
    told = replace(
        found.base.upgrade,
        error_code=ErrorCode.AGENT_RESTARTED,
        error_detail=f"agent restarted in {found.was.value}",
    )
    done, book = finish(found.base.moved(S.FAILED, told), blame=False)
    uid = found.record.upgrade_id
    stop = (fx.StopCandidate(upgrade_id=uid),) if found.was in CANDIDATE_STATES else ()
    return done, (*stop, *book)


def _too_many_attempts(found: Found) -> Result:
    return fail(
        found.base.moved(S.STAGING),
        ErrorCode.TOO_MANY_ATTEMPTS,
        f"interrupted {found.record.attempt} times",
    )


def _resume_staging(found: Found) -> Result:
    staging = found.base.moved(
        S.STAGING, replace(found.base.upgrade, attempt=found.record.attempt + 1)
    )
    return staging, begin_staging(staging)


def _revert(found: Found) -> Result:
    """A candidate may exist (Starting .. Committing before the swap, RollingBack): revert."""
    record = found.record
    code = record.error_code if found.was is S.ROLLING_BACK and record.error_code else None
    return roll_back(
        found.base,
        code or ErrorCode.AGENT_RESTARTED,
        record.error_detail if code else f"agent restarted in {found.was.value}",
    )


def _ended(state: UpgradeState) -> RestartRule:
    return RestartRule(
        to=state,
        when=f"recorded {state.value}",
        applies=lambda f: f.was is state,
        then=_reassert,
    )


#: The restart decision, first matching row wins.
RESTART_RULES: tuple[RestartRule, ...] = (
    _ended(S.FAILED),
    _ended(S.ROLLED_BACK),
    _ended(S.SUPERSEDED),
    RestartRule(
        to=S.SUCCEEDED,
        when="recorded Succeeded",
        applies=lambda f: f.was is S.SUCCEEDED,
        then=lambda f: succeed(f.base),  # re-asserted; collecting garbage again is harmless
    ),
    RestartRule(
        to=S.ROLLED_BACK,
        when="committed, rolled back by the launcher",
        applies=lambda f: f.committed and f.note_for_it and not f.swapped,
        then=_rolled_back_after_commit,
    ),
    RestartRule(
        to=S.WATCHING,
        when="committed, new main, watch window",
        applies=lambda f: f.committed and f.swapped and f.runs_target and f.watch_window,
        then=_new_main,
    ),
    RestartRule(
        to=S.SUCCEEDED,
        when="committed, new main, no window",
        applies=lambda f: f.committed and f.swapped and f.runs_target,
        then=_new_main,
    ),
    RestartRule(
        to=S.COMMITTED,
        when="committed, old version",
        applies=lambda f: f.committed and f.swapped,
        then=_hand_over_again,
    ),
    RestartRule(
        to=S.ROLLED_BACK,
        when="committed, reverted by hand",
        applies=lambda f: f.was in (S.COMMITTED, S.WATCHING),
        then=_reverted_by_hand,
    ),
    RestartRule(
        to=S.FAILED,
        when="finished, never terminal",
        applies=lambda f: f.finished,
        then=_finished_not_terminal,
    ),
    RestartRule(
        to=S.FAILED,
        when="staging, too many attempts",
        applies=lambda f: f.was in (S.STAGING, S.VERIFYING) and f.record.attempt >= MAX_ATTEMPTS,
        then=_too_many_attempts,
    ),
    RestartRule(
        to=S.STAGING,
        when="staging, attempts left",
        applies=lambda f: f.was in (S.STAGING, S.VERIFYING),
        then=_resume_staging,
    ),
    RestartRule(
        to=S.ROLLING_BACK,
        when="a candidate may exist",
        applies=lambda f: True,
        then=_revert,
    ),
)


def on_restarted(snap: Snapshot, event: ev.AgentRestarted) -> Result:
    """Finish or revert what the previous process left, so the status ends in the truth."""
    record = event.record
    if record is None or snap.hand is not None:
        # Nothing was recorded, or this is not a fresh process (a restart is its first event).
        return snap, NO_EFFECTS
    found = Found(record=record, event=event, base=snap.moved(S.IDLE, record.hand))
    rule = next(r for r in RESTART_RULES if r.applies(found))
    return rule.then(found)
