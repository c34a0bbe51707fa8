"""Shared builders for the upgrade unit tests: markers, snapshots in any state, event runs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from harmony_fleet.contracts.ids import InstanceId, UpgradeId, Version
from harmony_fleet.contracts.upgrade import UpgradeMarker, UpgradeTimeouts
from harmony_fleet.core.upgrade import effects as fx
from harmony_fleet.core.upgrade import events as ev
from harmony_fleet.core.upgrade.machine import step
from harmony_fleet.core.upgrade.records import InFlight, Memory
from harmony_fleet.core.upgrade.snapshot import Snapshot
from harmony_fleet.core.upgrade.states import ErrorCode, UpgradeState

S = UpgradeState
OLD = Version("1.0.0")
NEW = Version("2.0.0")
OWN = InstanceId("a" * 32)
CAND = InstanceId("b" * 32)
OTHER = InstanceId("c" * 32)
U1 = UpgradeId("u1")
U2 = UpgradeId("u2")
TIMEOUTS = UpgradeTimeouts(download_s=100.0, self_test_s=10.0, cutover_s=30.0, hold_s=60.0)


def marker(
    upgrade_id: str = U1, target: str = NEW, *, force: bool = False, device: str = "dev-1"
) -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=upgrade_id,
        device_id=device,
        target_version=target,
        artifact_url=f"http://artifacts.test/{target}",
        sha256="0" * 64,
        requested_at=1.0,
        force=force,
        timeouts=TIMEOUTS,
    )


def fresh(
    *, running: Version = OLD, failed: Iterable[str] = (), finished: Iterable[str] = ()
) -> Snapshot:
    return Snapshot.initial(
        running_version=running,
        instance_id=OWN,
        memory=Memory(
            finished=tuple(UpgradeId(f) for f in finished),
            failed_versions=frozenset(Version(f) for f in failed),
        ),
    )


def seen(m: UpgradeMarker | None = None, at: float = 10.0) -> ev.MarkerSeen:
    return ev.MarkerSeen(marker=m or marker(), seen_at=at)


def hb(instance: InstanceId = CAND, version: Version = NEW, uid: UpgradeId | None = U1) -> ev.Event:
    return ev.CandidateHeartbeatSeen(instance_id=instance, version=version, upgrade_id=uid)


#: Wall time at which the stops of these tests arrive (the commit time of a commit).
COMMIT_AT = 100.0


def stop(uid: UpgradeId = U1, cmd: str = "c1", at: float = COMMIT_AT) -> ev.StopReceived:
    return ev.StopReceived(upgrade_id=uid, command_id=cmd, received_at=at)


#: The events that take a fresh Idle snapshot to each state, for upgrade U1 (OLD -> NEW).
PATH: dict[UpgradeState, tuple[ev.Event, ...]] = {}
PATH[S.IDLE] = ()
PATH[S.STAGING] = (seen(),)
PATH[S.VERIFYING] = (*PATH[S.STAGING], ev.StagingDone(upgrade_id=U1))
PATH[S.STARTING] = (*PATH[S.VERIFYING], ev.SelfTestPassed(upgrade_id=U1))
PATH[S.CUTOVER_READY] = (*PATH[S.STARTING], ev.CandidateStarted(upgrade_id=U1))
PATH[S.HOLDING] = (*PATH[S.CUTOVER_READY], hb())
PATH[S.COMMITTING] = (*PATH[S.HOLDING], stop())
PATH[S.COMMITTED] = (*PATH[S.COMMITTING], ev.CommitDone(upgrade_id=U1))
PATH[S.ROLLING_BACK] = (*PATH[S.CUTOVER_READY], ev.CutoverTimeout(upgrade_id=U1))
PATH[S.ROLLED_BACK] = (*PATH[S.ROLLING_BACK], ev.RevertDone(upgrade_id=U1))
#: The new main (running NEW) resuming U1 after the swap, inside its watch window.
NEW_MAIN_RESUMES = ev.AgentRestarted(
    record=InFlight(
        marker=marker(),
        from_version=OLD,
        state=S.COMMITTED,
        started_at=10.0,
        committed_at=COMMIT_AT,
    ),
    current_version=NEW,
    since_commit_s=5.0,
)
PATH[S.WATCHING] = (NEW_MAIN_RESUMES,)
PATH[S.SUCCEEDED] = (*PATH[S.WATCHING], ev.WatchPassed(upgrade_id=U1))
#: States reached by the new main (a process running NEW), not by the old agent.
NEW_MAIN_STATES = frozenset({S.WATCHING, S.SUCCEEDED})
PATH[S.SUPERSEDED] = (*PATH[S.STAGING], seen(marker(U2, "3.0.0"), at=11.0))
PATH[S.FAILED] = (
    *PATH[S.STAGING],
    ev.StagingFailed(upgrade_id=U1, code=ErrorCode.DOWNLOAD_REJECTED, detail="404"),
)


def run(snap: Snapshot, events: Iterable[ev.Event]) -> tuple[Snapshot, list[fx.Effect]]:
    """Feed ``events`` in order; all effects, concatenated."""
    out: list[fx.Effect] = []
    for e in events:
        snap, effects = step(snap, e)
        out.extend(effects)
    return snap, out


def at(state: UpgradeState, snap: Snapshot | None = None) -> Snapshot:
    """A snapshot in ``state`` for upgrade U1, reached through the machine itself."""
    start = snap or fresh(running=NEW if state in NEW_MAIN_STATES else OLD)
    result, _ = run(start, PATH[state])
    assert result.state is state, (state, result.state)
    return result


def kinds(effects: Iterable[fx.Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


E = TypeVar("E")


def only(effects: Iterable[fx.Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def statuses(effects: Iterable[fx.Effect]) -> list[fx.WriteStatus]:
    return [e for e in effects if isinstance(e, fx.WriteStatus)]
