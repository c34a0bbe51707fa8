"""The driver's effects around a commit: arm the watch with the swap, end it, collect garbage.

Each one is wrapped so that nothing escapes as an exception, like the long steps in
:mod:`.work`: a failure to *arm* the watch becomes ``CommitFailed`` (no commit without its
safety net), while failing to clean up after it (ending the watch, collecting garbage, hashing)
is only logged, because the upgrade's outcome is already true and told.
"""

from __future__ import annotations

import logging

from harmony_fleet.agent.upgrade.ports import AfterCommit
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.executor import UpgradeExecutor
from harmony_fleet.core.upgrade.records import LocalState, without_installed
from harmony_fleet.core.upgrade.watch import RollbackNote

log = logging.getLogger("harmony_fleet.agent.upgrade")


async def arm_and_swap(
    executor: UpgradeExecutor, after: AfterCommit | None, effect: fx.SwapCurrent
) -> ev.Event:
    """Write the watch note (if any), then swap ``current``: CommitDone or CommitFailed."""
    uid = effect.upgrade_id
    if effect.watch is not None and after is not None:
        try:
            await after.arm_watch(effect.watch)
        except Exception as exc:
            return ev.CommitFailed(
                upgrade_id=uid, detail=f"cannot arm the post-commit watch: {exc}"
            )
    try:
        await executor.swap_current(effect.version)
    except Exception as exc:
        return ev.CommitFailed(upgrade_id=uid, detail=str(exc))
    return ev.CommitDone(upgrade_id=uid)


async def end_watch(after: AfterCommit | None, upgrade_id: UpgradeId) -> None:
    if after is None:
        return
    try:
        await after.end_watch(upgrade_id)
    except Exception as exc:
        log.error("post-commit notes not removed", extra={"error": str(exc)})


async def rollback_note(after: AfterCommit) -> RollbackNote | None:
    try:
        return await after.rollback_note()
    except Exception as exc:
        log.error("post-commit rollback note unreadable", extra={"error": str(exc)})
        return None


async def own_hash(after: AfterCommit, local: LocalState, running: Version) -> str | None:
    """The running version's hash, if not recorded yet (a first install is hashed once, here:
    it is what a later ``fleet rollback`` to it will be checked against)."""
    if running in local.installed:
        return None
    try:
        return await after.artifact_sha256(running)
    except Exception as exc:
        log.warning("running artifact not hashed", extra={"error": str(exc)})
        return None


async def collect(
    after: AfterCommit | None, local: LocalState, protect: frozenset[Version], keep: int
) -> LocalState:
    """Collect old versions; the local state without the hashes of the removed ones."""
    if after is None:
        return local
    try:
        removed = await after.collect_garbage(protect, keep)
    except Exception as exc:
        log.error("garbage collection failed", extra={"error": str(exc)})
        return local
    if removed:
        log.info("old versions removed", extra={"versions": removed})
    return without_installed(local, removed)
