"""The long steps of an upgrade, each turned into the one event that reports its outcome.

Every executor call that can take a while (staging, the self-test, starting and watching the
candidate, the revert) is wrapped here so that whatever it raises becomes a machine event with an
error code and a detail a person can read. Nothing escapes as an exception: the machine always
hears how the work ended.
"""

from __future__ import annotations

import logging

from harmony_fleet.agent.upgrade.ports import Clock
from harmony_fleet.contracts.upgrade import UpgradeMarker
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.executor import (
    CandidateHandle,
    ProgressCallback,
    UpgradeExecutor,
    staging_error_code,
)
from harmony_fleet.core.upgrade.states import ErrorCode

log = logging.getLogger("harmony_fleet.agent.upgrade")


async def stage(
    executor: UpgradeExecutor, marker: UpgradeMarker, progress: ProgressCallback
) -> ev.Event:
    """Self-heal the layout, then download and verify: StagingDone or StagingFailed."""
    uid = marker.upgrade_id
    try:
        await executor.self_heal_layout()
    except Exception as exc:
        return ev.StagingFailed(upgrade_id=uid, code=ErrorCode.LAYOUT_BROKEN, detail=str(exc))
    try:
        await executor.stage(marker, progress)
    except Exception as exc:
        return ev.StagingFailed(upgrade_id=uid, code=staging_error_code(exc), detail=str(exc))
    return ev.StagingDone(upgrade_id=uid)


async def self_test(executor: UpgradeExecutor, marker: UpgradeMarker, timeout_s: float) -> ev.Event:
    """Run the self-test: passed, failed (with exit code and log tail) or timed out."""
    uid = marker.upgrade_id
    try:
        outcome = await executor.self_test(marker, timeout_s)
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
    executor: UpgradeExecutor, marker: UpgradeMarker
) -> tuple[ev.Event, CandidateHandle | None]:
    """Start the candidate: CandidateStarted with its handle, or CandidateStartFailed."""
    uid = marker.upgrade_id
    try:
        handle = await executor.start_candidate(marker)
    except Exception as exc:
        return ev.CandidateStartFailed(upgrade_id=uid, detail=str(exc)), None
    return ev.CandidateStarted(upgrade_id=uid), handle


async def candidate_exit(executor: UpgradeExecutor, handle: CandidateHandle) -> ev.Event:
    """Wait for the candidate to end: CandidateExited with its exit code and last lines."""
    try:
        outcome = await executor.candidate_exit(handle)
    except Exception as exc:
        return ev.CandidateExited(
            upgrade_id=handle.upgrade_id, exit_code=None, log_tail=(f"lost the candidate: {exc}",)
        )
    return ev.CandidateExited(
        upgrade_id=handle.upgrade_id, exit_code=outcome.exit_code, log_tail=outcome.log_tail
    )


async def revert(
    executor: UpgradeExecutor, effect: fx.Revert, clock: Clock, *, attempts: int, pause_s: float
) -> ev.Event:
    """Revert, retrying a few times (the rollback path must not give up on one hiccup)."""
    detail = ""
    for attempt in range(1, attempts + 1):
        try:
            await executor.revert(
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
