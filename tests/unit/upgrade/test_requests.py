"""Requests, pure: which marker returns a device to its previous version (and the clear
refusals), how a followed upgrade ended (superseded included), and the one-line description."""

from __future__ import annotations

import msgspec
import pytest

from harmony_fleet.contracts import DeviceRecord, UpgradeStatus, UpgradeSummary, UpgradeTimeouts
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.contracts.upgrade import ArtifactSource, Progress
from harmony_fleet.core.upgrade.requests import (
    Ending,
    Follow,
    Outcome,
    Until,
    clock_time,
    describe,
    rollback_marker,
)
from harmony_fleet.errors import NotFound, Refused

from .support import NEW, OLD, OWN, marker

SHA_OLD = "1" * 64
DEV = "dev-1"
TIMEOUTS = UpgradeTimeouts(watch_s=30)


def record(current: str = NEW) -> DeviceRecord:
    return DeviceRecord(
        device_id=DEV, current_version=current, online=True, first_seen=1.0, last_seen=2.0
    )


def status(phase: P = P.SUCCEEDED, **changes: object) -> UpgradeStatus:
    base = UpgradeStatus(
        upgrade_id="u1",
        device_id=DEV,
        phase=phase,
        from_version=OLD,
        to_version=NEW,
        instance_id=OWN,
        started_at=1.0,
        updated_at=2.0,
        previous_version=OLD,
        previous_sha256=SHA_OLD,
    )
    return msgspec.structs.replace(base, **changes)


def decide(
    rec: DeviceRecord | None = None, st: UpgradeStatus | None = None, **kw: object
) -> object:
    return rollback_marker(
        rec,
        st,
        kw.pop("current_marker", marker("u1")),  # type: ignore[arg-type]
        device=DEV,
        timeouts=TIMEOUTS,
        requested_by="alice",
        now=5.0,
    )


def test_the_marker_names_the_kept_version_its_recorded_hash_and_no_download() -> None:
    m = rollback_marker(
        record(), status(), marker("u1"), device=DEV, timeouts=TIMEOUTS, force=True, now=5.0
    )
    assert (m.target_version, m.sha256, m.artifact_url) == (OLD, SHA_OLD, "")
    assert m.source is ArtifactSource.INSTALLED and m.force and m.timeouts == TIMEOUTS
    assert m.upgrade_id != "u1"


def test_unknown_device() -> None:
    with pytest.raises(NotFound, match="unknown"):
        decide(None, status())


@pytest.mark.parametrize(
    "st",
    [None, status(previous_version=None, previous_sha256=None)],
    ids=["no upgrade yet", "no previous recorded"],
)
def test_no_previous_version_known(st: UpgradeStatus | None) -> None:
    with pytest.raises(NotFound, match="no previous version"):
        decide(record(), st, current_marker=marker("u1") if st else None)


def test_no_recorded_hash_means_no_blind_rollback() -> None:
    with pytest.raises(NotFound, match="SHA-256"):
        decide(record(), status(previous_sha256=None))


@pytest.mark.parametrize("phase", [P.STAGING, P.CUTOVER_READY, P.COMMITTED])
def test_an_upgrade_in_flight_is_refused(phase: P) -> None:
    with pytest.raises(Refused, match="in flight") as info:
        decide(record(), status(phase))
    assert info.value.code == "in_flight"


def test_a_marker_not_taken_up_yet_is_in_flight_too() -> None:
    with pytest.raises(Refused, match="not been taken up"):
        decide(record(), status(), current_marker=marker("u2", "3.0.0"))


def test_already_on_the_previous_version() -> None:
    with pytest.raises(Refused, match="already runs"):
        decide(record(current=OLD), status())


def test_the_description_says_what_the_watch_waits_for() -> None:
    committed = status(P.COMMITTED, watch_until=1000.0)
    assert describe(committed, now=900.0) == f"committed, watched until {clock_time(1000.0)}"
    assert "steadily" in describe(committed, now=1001.0)
    assert describe(status(), now=900.0) == ""


def test_the_description_of_a_summary_is_rendered_by_the_reader() -> None:
    summary = UpgradeSummary(
        upgrade_id="u1", phase=P.COMMITTED, target_version=NEW, watch_until=1000.0
    )
    assert describe(summary, now=900.0) == f"committed, watched until {clock_time(1000.0)}"
    failed = UpgradeSummary(
        upgrade_id="u1",
        phase=P.ROLLED_BACK,
        target_version=NEW,
        error_code="candidate_exited",
        error_detail="exit 3",
    )
    assert describe(failed, now=0.0) == "candidate_exited: exit 3"
    staging = status(P.STAGING, progress=Progress(bytes_done=1, bytes_total=4))
    assert describe(staging, now=0.0).startswith("25% of")


# -- following an upgrade to its end -------------------------------------------------------------
def observe(follow: Follow, *readings: tuple[UpgradeStatus | None, object]) -> Outcome | None:
    outcome = None
    for st, current in readings:
        outcome = follow.observe(st, record(), current)  # type: ignore[arg-type]
    return outcome


def test_a_marker_replaced_before_the_device_took_it_up_is_superseded_at_once() -> None:
    previous = status(P.SUCCEEDED, upgrade_id="u0")
    outcome = observe(Follow("u1"), (previous, marker("u1")), (previous, marker("u2", "3.0.0")))
    assert outcome == Outcome(Ending.SUPERSEDED, "u2")


def test_an_upgrade_the_device_dropped_for_a_newer_one_is_superseded() -> None:
    follow = Follow("u1")
    assert observe(follow, (status(P.STAGING), marker("u1"))) is None
    # The agent wrote u1's end and u2's start faster than we read: only u2 is left to see.
    outcome = observe(follow, (status(P.STAGING, upgrade_id="u2"), marker("u2", "3.0.0")))
    assert outcome == Outcome(Ending.SUPERSEDED, "u2")


def test_the_agent_s_superseded_status_ends_the_follow_with_who_replaced_it() -> None:
    aborted = status(P.FAILED, error_code="superseded", pending_upgrade_id="u2")
    assert observe(Follow("u1"), (aborted, marker("u2", "3.0.0"))) == Outcome(
        Ending.SUPERSEDED, "u2"
    )


def test_the_superseded_phase_ends_the_follow_too() -> None:
    aborted = status(P.SUPERSEDED, pending_upgrade_id="u2")
    assert observe(Follow("u1"), (aborted, marker("u2", "3.0.0"))) == Outcome(
        Ending.SUPERSEDED, "u2"
    )


def test_an_upgrade_with_a_candidate_finishes_by_its_own_rules_despite_a_newer_marker() -> None:
    follow = Follow("u1")
    holding = status(P.HOLDING, pending_upgrade_id="u2")
    assert observe(follow, (holding, marker("u2", "3.0.0"))) is None
    assert observe(follow, (status(P.SUCCEEDED), marker("u2", "3.0.0"))) == Outcome(Ending.OK)


def test_an_older_status_is_not_mistaken_for_a_newer_upgrade() -> None:
    previous = status(P.SUCCEEDED, upgrade_id="u0")
    assert observe(Follow("u1"), (previous, marker("u1"))) is None


def test_until_committed_returns_at_the_commit_and_succeeded_waits_for_the_window() -> None:
    committed = status(P.COMMITTED, watch_until=1000.0)
    assert observe(Follow("u1", Until.COMMITTED), (committed, marker("u1"))) == Outcome(
        Ending.COMMITTED
    )
    assert observe(Follow("u1"), (committed, marker("u1"))) is None
    assert observe(Follow("u1"), (status(P.ROLLED_BACK), marker("u1"))) == Outcome(Ending.FAILED)
