"""What the agent keeps on its own disk about upgrades, and the pure rules to update it.

The KV status tells the operator; this local record tells the *next agent process* on the same
device (old or new version: they share the state dir). These survive a restart:

* ``finished``: the upgrade ids that reached an end here (bounded), so a replayed marker or a
  redelivered KV value never runs a finished upgrade again;
* ``failed_versions``: the skip list, versions that proved bad on this device;
* ``in_flight``: the latest upgrade and how far it got, so a restarted agent (old or new
  version) can finish or revert it and tell the truth in the status. It is kept after the
  upgrade ended, in its terminal state, so a restart re-asserts the final status (a status
  write lost with the process is written again) instead of resuming anything; the next upgrade
  replaces it. After a commit it also tells the new main that it is still inside its watch
  window (``Watching``, with ``committed_at``);
* ``previous``: the version kept on disk to return to (set when an upgrade became final), which
  ``fleet rollback`` asks for; garbage collection never removes it;
* ``installed``: the SHA-256 of each installed version, recorded when it was verified (or, for
  the first install, hashed the first time the agent ran from it), so that a rollback, which
  downloads nothing, still checks the bytes it is about to run.

Its format (:class:`LocalState`, :class:`InFlight`) is a contract read across versions and
lives in ``contracts.local_state``; the file itself is written by ``adapters.device.state_store``
(atomic write, rename, fsync).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from harmony_fleet.contracts.ids import UpgradeId, Version, version
from harmony_fleet.contracts.local_state import InFlight, LocalState, UpgradeInHand
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade.states import MAX_FINISHED
from harmony_fleet.core.upgrade.trust import raised_floor

__all__ = [
    "InFlight",
    "LocalState",
    "Memory",
    "StateStore",
    "UpgradeInHand",
    "memory_of",
    "remember_failed",
    "remember_finished",
    "remembered",
    "with_failed",
    "with_finished",
    "with_in_flight",
    "with_installed",
    "with_previous",
    "without_installed",
]


@dataclass(frozen=True, kw_only=True)
class Memory:
    """The part of :class:`LocalState` the acceptance rule reads (kept in the machine)."""

    finished: tuple[UpgradeId, ...] = ()
    failed_versions: frozenset[Version] = field(default_factory=frozenset)


def remember_finished(
    finished: tuple[UpgradeId, ...], upgrade_id: UpgradeId, *, limit: int = MAX_FINISHED
) -> tuple[UpgradeId, ...]:
    """Append ``upgrade_id`` (once), keeping the newest ``limit`` ids."""
    if upgrade_id in finished:
        return finished
    return (*finished, upgrade_id)[-limit:]


def remember_failed(failed: tuple[Version, ...], version: Version) -> tuple[Version, ...]:
    """Add ``version`` to the skip list (once)."""
    return failed if version in failed else (*failed, version)


def with_finished(state: LocalState, upgrade_id: UpgradeId) -> LocalState:
    return replace(state, finished=remember_finished(state.finished, upgrade_id))


def with_failed(state: LocalState, version: Version) -> LocalState:
    return replace(state, failed_versions=remember_failed(state.failed_versions, version))


def with_in_flight(state: LocalState, record: InFlight | None) -> LocalState:
    return replace(state, in_flight=record)


def with_installed(state: LocalState, version: Version, sha256: str) -> LocalState:
    if state.installed.get(version) == sha256:
        return state
    return replace(state, installed={**state.installed, version: sha256})


def with_floor(state: LocalState, committed: Version) -> LocalState:
    """The state once ``committed`` passed its watch (or runs as the main outside one): the
    version floor rises to it, never falls (``core.upgrade.trust``)."""
    floor = raised_floor(state.version_floor, committed)
    if floor == state.version_floor:
        return state
    return replace(state, version_floor=version(floor))


def without_installed(state: LocalState, versions: list[Version]) -> LocalState:
    if not any(v in state.installed for v in versions):
        return state
    return replace(state, installed={v: h for v, h in state.installed.items() if v not in versions})


def with_previous(state: LocalState, version: Version) -> LocalState:
    return replace(state, previous=version)


def remembered(state: LocalState, effect: fx.Effect) -> LocalState | None:
    """The local state after ``effect`` if it is one that only updates the state file, else None.

    The driver saves what this returns and the property-test model keeps it: one reading of
    these effects, so the two can never disagree about what the file holds.
    """
    match effect:
        case fx.RecordInstalled(version=version, sha256=sha):
            return with_installed(state, version, sha)
        case fx.RecordPrevious(version=version):
            return with_previous(state, version)
        case fx.RaiseFloor(version=version):
            return with_floor(state, version)
        case fx.RememberFailedVersion(version=version):
            return with_failed(state, version)
        case fx.RecordFinished(upgrade_id=uid):
            return with_finished(state, uid)
        case fx.PersistInFlight(record=record):
            return with_in_flight(state, record)
    return None


def memory_of(state: LocalState) -> Memory:
    return Memory(finished=state.finished, failed_versions=frozenset(state.failed_versions))


class StateStore(Protocol):
    """Durable storage of :class:`LocalState` (a file on the device; a dict in tests)."""

    def load(self) -> LocalState:
        """The last saved state, or an empty one if there is none."""
        ...

    def save(self, state: LocalState) -> None:
        """Replace the saved state atomically and durably (write, fsync, rename, fsync dir)."""
        ...
