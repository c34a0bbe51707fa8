"""The rule for a marker arriving: start it, ignore it, keep it for later, or refuse it.

The marker KV key of a device holds one value, the operator's latest wish, and it is redelivered
on every watcher restart. So the agent must judge each delivery on its own:

1. **Replay.** An ``upgrade_id`` that already finished on this device is ignored, forever (the
   local state remembers the last :data:`~.states.MAX_FINISHED` of them).
2. **Duplicate.** The ``upgrade_id`` in hand is a no-op.
3. **A new marker while one is in flight.** One upgrade at a time, and a new one starts only
   once the current one is terminal, and the status says so (``pending_upgrade_id``):

   * before the candidate exists (Staging, Verifying) the current one is **aborted**: status
     Failed with code ``superseded`` (nothing outside staging changed, the version is not
     blamed), then the new marker is judged as if at rest;
   * once a candidate may exist (Starting, CutoverReady, Holding, Committing, RollingBack) the
     current one **finishes by its own rules** (commit on stop, revert on timeout) and the new
     marker waits. Only the latest waiting marker is kept. After a commit the old agent hands
     over without starting it: the new main instance reads the marker when it starts, and keeps
     it waiting until its post-commit watch window has passed (Watching): one upgrade at a time,
     and a device on probation is not upgraded again. If the launcher rolls it back instead,
     the previous version reads the marker key afresh when it starts.
4. **Nothing to do.** Target version equals the running version: the upgrade succeeds at once
   (status Succeeded, code ``already_running``). This is also how an operator cancels: write a
   marker back to the running version.
5. **Skip list.** A version that proved bad on this device before is refused (status Failed,
   code ``version_failed_before``) unless ``marker.force``.
6. Otherwise: start.
"""

from __future__ import annotations

import enum

from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import AT_REST, UpgradeState


class Verdict(enum.StrEnum):
    """What to do with one marker delivery."""

    REPLAY = "replay"
    """Finished here before: ignore."""
    DUPLICATE = "duplicate"
    """The upgrade in hand: no-op."""
    HANDING_OVER = "handing_over"
    """The old agent committed and is exiting: the new main instance will judge it."""
    SUPERSEDE = "supersede"
    """Abort the current (pre-candidate) upgrade, then judge the new marker at rest."""
    DEFER = "defer"
    """Keep it as pending until the current upgrade ends."""
    ALREADY_RUNNING = "already_running"
    """Target is the running version: Succeeded at once."""
    REFUSE_FAILED_BEFORE = "refuse_failed_before"
    """The target is on the skip list and the marker is not forced."""
    START = "start"


#: In-flight states where the current upgrade is aborted for a newer marker.
SUPERSEDABLE = frozenset({UpgradeState.STAGING, UpgradeState.VERIFYING})


def judge(snap: Snapshot, marker: UpgradeMarker) -> Verdict:
    """Apply the rules above to ``marker`` arriving while the machine is in ``snap``."""
    if marker.upgrade_id in snap.memory.finished:
        return Verdict.REPLAY
    if snap.belongs(marker.upgrade_id):
        return Verdict.DUPLICATE
    if snap.state is UpgradeState.COMMITTED and snap.running_version != snap.target:
        return Verdict.HANDING_OVER
    if snap.state in SUPERSEDABLE:
        return Verdict.SUPERSEDE
    if snap.state not in AT_REST:
        return Verdict.DEFER
    return judge_at_rest(snap, marker)


def judge_at_rest(snap: Snapshot, marker: UpgradeMarker) -> Verdict:
    """Rules 4 to 6, for a machine with no upgrade under way."""
    if marker.target_version == snap.running_version:
        return Verdict.ALREADY_RUNNING
    if marker.target_version in snap.memory.failed_versions and not marker.force:
        return Verdict.REFUSE_FAILED_BEFORE
    return Verdict.START
