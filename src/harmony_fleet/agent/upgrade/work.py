"""The driver's calls to the device, each turned into the event (or the value) it reports.

Every call to the device's seams (``core.upgrade.device``: the files and the candidate runner)
is wrapped here so that nothing escapes as an exception. Long steps (staging, the self-test,
starting and watching the candidate, the revert) become the one machine event that reports how
they ended, with an error code and a detail a person can read. Around the commit, failing to
*arm* the watch becomes ``CommitFailed`` (no commit without its safety net), while failing to
clean up after it (ending the watch, collecting garbage, hashing) is only logged, because the
upgrade's outcome is already true and told.
"""

from __future__ import annotations

import logging

from harmony_fleet.agent.upgrade.ports import Clock
from harmony_fleet.contracts.device_files import RollbackNote
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.device import (
    CandidateHandle,
    CandidateRunner,
    DeviceFiles,
    ProgressCallback,
    staging_error_code,
)
from harmony_fleet.core.upgrade.records import InFlight, LocalState, without_installed
from harmony_fleet.core.upgrade.states import ErrorCode
from harmony_fleet.core.upgrade.trust import floor_refusal

log = logging.getLogger(__name__)


async def stage(files: DeviceFiles, marker: UpgradeMarker, progress: ProgressCallback) -> ev.Event:
    """Self-heal the layout, then download and verify: StagingDone or StagingFailed."""
    uid = marker.upgrade_id
    try:
        await files.self_heal_layout()
    except Exception as exc:
        return ev.StagingFailed(upgrade_id=uid, code=ErrorCode.LAYOUT_BROKEN, detail=str(exc))
    try:
        await files.stage(marker, progress)
    except Exception as exc:
        return ev.StagingFailed(upgrade_id=uid, code=staging_error_code(exc), detail=str(exc))
    return ev.StagingDone(upgrade_id=uid)


async def below_floor(
    files: DeviceFiles, marker: UpgradeMarker, floor: Version | None
) -> ev.Event | None:
    """StagingFailed (``untrusted``) if the target is below the version floor and not kept on
    disk (``core.upgrade.trust``); None when the upgrade may go on."""
    target = marker.target_version
    try:
        on_disk = await files.artifact_sha256(target) is not None
    except Exception as exc:
        log.warning("installed artifact unreadable", extra={"error": str(exc)})
        on_disk = False
    refusal = floor_refusal(target, floor, on_disk=on_disk)
    if refusal is None:
        return None
    log.warning("upgrade refused", extra={"reason": refusal, "upgrade_id": marker.upgrade_id})
    return ev.StagingFailed(upgrade_id=marker.upgrade_id, code=ErrorCode.UNTRUSTED, detail=refusal)


async def self_test(
    runner: CandidateRunner, files: DeviceFiles, marker: UpgradeMarker, timeout_s: float
) -> ev.Event:
    """Check the staged bytes again, then run the self-test: passed, failed (with exit code and
    log tail) or timed out."""
    uid = marker.upgrade_id
    try:
        await files.verify_staged(marker.target_version)
    except Exception as exc:
        return ev.SelfTestFailed(upgrade_id=uid, detail=f"staged artifact changed: {exc}")
    try:
        outcome = await runner.self_test(marker, timeout_s)
    except Exception as exc:
        return ev.SelfTestFailed(upgrade_id=uid, detail=f"self-test could not run: {exc}")
    if outcome.ok:
        return ev.SelfTestPassed(upgrade_id=uid)
    if outcome.timed_out:
        return ev.SelfTestTimedOut(upgrade_id=uid)
    return ev.SelfTestFailed(
        upgrade_id=uid,
        detail=f"self-test exited with code {outcome.exit_code}",
        exit_code=outcome.exit_code,
        log_tail=outcome.log_tail,
    )


async def start_candidate(
    runner: CandidateRunner, marker: UpgradeMarker
) -> tuple[ev.Event, CandidateHandle | None]:
    """Start the candidate: CandidateStarted with its handle, or CandidateStartFailed."""
    uid = marker.upgrade_id
    try:
        handle = await runner.start_candidate(marker)
    except Exception as exc:
        return ev.CandidateStartFailed(upgrade_id=uid, detail=str(exc)), None
    return ev.CandidateStarted(upgrade_id=uid), handle


async def candidate_exit(runner: CandidateRunner, handle: CandidateHandle) -> ev.Event:
    """Wait for the candidate to end: CandidateExited with its exit code and last lines."""
    try:
        outcome = await runner.candidate_exit(handle)
    except Exception as exc:
        return ev.CandidateExited(
            upgrade_id=handle.upgrade_id, exit_code=None, log_tail=(f"lost the candidate: {exc}",)
        )
    return ev.CandidateExited(
        upgrade_id=handle.upgrade_id, exit_code=outcome.exit_code, log_tail=outcome.log_tail
    )


async def revert(
    runner: CandidateRunner,
    files: DeviceFiles,
    effect: fx.Revert,
    clock: Clock,
    attempts: int,
    pause_s: float,
) -> ev.Event:
    """Stop the candidate, then revert the files, retrying a few times (the rollback path must
    not give up on one hiccup; a candidate that survives SIGKILL fails the attempt)."""
    detail = ""
    for attempt in range(1, attempts + 1):
        try:
            await runner.stop_candidate(effect.upgrade_id)
            await files.revert(
                upgrade_id=effect.upgrade_id, previous=effect.previous, target=effect.target
            )
        except Exception as exc:
            detail = str(exc)
            log.error("revert failed", extra={"attempt": attempt, "error": detail})
            if attempt < attempts:
                await clock.sleep(pause_s)
            continue
        return ev.RevertDone(upgrade_id=effect.upgrade_id)
    return ev.RevertFailed(upgrade_id=effect.upgrade_id, detail=detail)


# -- around the commit ------------------------------------------------------------------------


async def arm_and_swap(files: DeviceFiles, effect: fx.SwapCurrent) -> ev.Event:
    """Write the watch note (if any), then swap ``current``: CommitDone or CommitFailed."""
    uid = effect.upgrade_id
    if effect.watch is not None:
        try:
            await files.arm_watch(effect.watch)
        except Exception as exc:
            return ev.CommitFailed(
                upgrade_id=uid, detail=f"cannot arm the post-commit watch: {exc}"
            )
    try:
        await files.swap_current(effect.version)
    except Exception as exc:
        return ev.CommitFailed(upgrade_id=uid, detail=str(exc))
    return ev.CommitDone(upgrade_id=uid)


async def end_watch(files: DeviceFiles, upgrade_id: UpgradeId) -> None:
    try:
        await files.end_watch(upgrade_id)
    except Exception as exc:
        log.error("post-commit notes not removed", extra={"error": str(exc)})


async def rollback_note(files: DeviceFiles) -> RollbackNote | None:
    try:
        return await files.rollback_note()
    except Exception as exc:
        log.error("post-commit rollback note unreadable", extra={"error": str(exc)})
        return None


async def since_commit(files: DeviceFiles, record: InFlight | None) -> float | None:
    """How long ago the in-flight upgrade committed, on a clock that does not step (None:
    unknown, and then the machine watches the whole window)."""
    if record is None:
        return None
    try:
        return await files.since_commit(record.upgrade_id)
    except Exception as exc:
        log.warning("commit time unreadable", extra={"error": str(exc)})
        return None


async def own_hash(files: DeviceFiles, local: LocalState, running: Version) -> str | None:
    """The running version's hash, if not recorded yet (a first install is hashed once, here:
    it is what a later ``fleet rollback`` to it will be checked against)."""
    if running in local.installed:
        return None
    try:
        return await files.artifact_sha256(running)
    except Exception as exc:
        log.warning("running artifact not hashed", extra={"error": str(exc)})
        return None


async def collect(
    files: DeviceFiles, local: LocalState, protect: frozenset[Version], keep: int
) -> LocalState:
    """Collect old versions; the local state without the hashes of the removed ones."""
    try:
        removed = await files.collect_garbage(protect, keep)
    except Exception as exc:
        log.error("garbage collection failed", extra={"error": str(exc)})
        return local
    if removed:
        log.info("old versions removed", extra={"versions": removed})
    return without_installed(local, removed)
