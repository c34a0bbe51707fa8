"""``fleet rollback``'s decision, pure: which marker returns a device to its previous version,
and the clear refusals (unknown device, nothing to return to, an upgrade in flight)."""

from __future__ import annotations

import msgspec
import pytest

from harmony_fleet.cli.rollback import rollback_marker
from harmony_fleet.cli.upgrade import watch_note
from harmony_fleet.contracts import DeviceRecord, UpgradeStatus, UpgradeTimeouts
from harmony_fleet.contracts.upgrade import AgentUpgradePhase as P
from harmony_fleet.contracts.upgrade import ArtifactSource
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


def test_the_watch_note_says_what_the_watch_waits_for() -> None:
    committed = status(P.COMMITTED, watch_until=1000.0)
    assert watch_note(committed, now=900.0).startswith("watching until")
    assert "steadily" in watch_note(committed, now=1001.0)
    assert watch_note(status(), now=900.0) == ""
