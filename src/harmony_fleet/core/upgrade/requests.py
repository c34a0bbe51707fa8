"""Asking for an upgrade and following it, the pure halves: no I/O, no clock of its own.

What ``fleet upgrade``, ``fleet rollback``, the Kubernetes mode and the local fleet share, once
the reading and writing (``adapters.nats.fleet_kv``) is done:

* :func:`rollback_marker`: the marker that returns a device to the version it ran before, or
  the clear refusal (unknown device, nothing to return to, an upgrade in flight);
* :class:`Follow`: how a request ended, judged from what the device and the operator wrote:
  succeeded, committed (when asked to stop there), rolled back or failed, or **superseded** by
  another request (so that ``--wait`` never waits for an upgrade nobody will finish);
* :func:`describe`: one line for a person about a status or the operator's summary of it. Times
  are rendered here, by the reader, in the reader's local time: nothing stores rendered text.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    new_upgrade_id,
)
from harmony_fleet.contracts.upgrade import ArtifactSource, ErrorCode, Progress
from harmony_fleet.errors import NotFound, Refused

log = logging.getLogger(__name__)

P = AgentUpgradePhase


def rollback_marker(
    record: DeviceRecord | None,
    status: UpgradeStatus | None,
    marker: UpgradeMarker | None,
    *,
    device: str,
    timeouts: UpgradeTimeouts,
    force: bool = False,
    requested_by: str = "",
    now: float | None = None,
) -> UpgradeMarker:
    """The marker that returns ``device`` to its previous version, or why there is none.

    ``record`` is the device's registry entry, ``status`` its latest upgrade status and
    ``marker`` its current marker (what was last asked for).
    """
    if record is None:
        raise NotFound(f"device {device} is unknown (never seen by the operator)")
    if status is not None and not status.phase.terminal:
        raise Refused(
            f"{device}: upgrade {status.upgrade_id} to {status.to_version} is in flight "
            f"({status.phase.value}); wait for it to end",
            code="in_flight",
        )
    if marker is not None and (status is None or status.upgrade_id != marker.upgrade_id):
        raise Refused(
            f"{device}: upgrade {marker.upgrade_id} to {marker.target_version} was requested "
            "and has not been taken up yet; wait for it to end",
            code="in_flight",
        )
    previous = status.previous_version if status is not None else None
    if status is None or previous is None:
        raise NotFound(f"{device}: no previous version known (no upgrade has ended here yet)")
    if status.previous_sha256 is None:
        raise NotFound(
            f"{device}: the device recorded no SHA-256 for {previous}; "
            "use `fleet upgrade` with its URL and checksum"
        )
    if record.current_version == previous:
        raise Refused(f"{device} already runs {previous}", code="already_running")
    return UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=record.device_id,
        target_version=previous,
        artifact_url="",
        sha256=status.previous_sha256,
        requested_at=time.time() if now is None else now,
        requested_by=requested_by,
        force=force,
        timeouts=timeouts,
        source=ArtifactSource.INSTALLED,
    )


class Until(enum.StrEnum):
    """Where ``--wait`` stops following a good upgrade."""

    COMMITTED = "committed"
    """At the commit: the new version runs, but its watch window may still roll it back."""
    SUCCEEDED = "succeeded"
    """At the end of the watch window: the device will not go back by itself any more."""


class Ending(enum.StrEnum):
    """How a followed upgrade ended (the ``outcome`` of ``fleet upgrade --wait --json``)."""

    OK = "ok"
    COMMITTED = "committed"
    FAILED = "failed"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Outcome:
    ending: Ending
    superseded_by: str | None = None
    """With :attr:`Ending.SUPERSEDED`: the upgrade that replaced this one, when known."""


def _superseded(status: UpgradeStatus) -> bool:
    # Superseded is the terminal phase an agent writes for a replaced upgrade; older agents
    # write Failed with the code ``superseded``.
    return status.phase is P.SUPERSEDED or (
        status.phase is P.FAILED and status.error_code == ErrorCode.SUPERSEDED
    )


@dataclass
class Follow:
    """Judges, reading after reading, whether upgrade ``upgrade_id`` has ended and how."""

    upgrade_id: str
    until: Until = Until.SUCCEEDED
    taken_up: bool = False
    """A status of this upgrade was seen: the device is working on it (or was)."""

    def observe(
        self,
        status: UpgradeStatus | None,
        record: DeviceRecord | None,
        marker: UpgradeMarker | None,
    ) -> Outcome | None:
        """The outcome, or None while the upgrade may still go on.

        ``status`` is the device's latest upgrade status, ``record`` its registry entry and
        ``marker`` its current marker (None when absent or unreadable).
        """
        uid = self.upgrade_id
        if status is not None and status.upgrade_id == uid:
            self.taken_up = True
            if status.phase is P.SUCCEEDED:
                return Outcome(Ending.OK)
            if _superseded(status):
                by = status.pending_upgrade_id
                if by is None and marker is not None and marker.upgrade_id != uid:
                    by = marker.upgrade_id
                return Outcome(Ending.SUPERSEDED, by)
            if status.phase.terminal:
                return Outcome(Ending.FAILED)
            if status.phase is P.COMMITTED and self.until is Until.COMMITTED:
                return Outcome(Ending.COMMITTED)
        summary = record.upgrade if record is not None else None
        if summary is not None and summary.upgrade_id == uid:
            if summary.phase is P.SUCCEEDED:
                return Outcome(Ending.OK)
            if summary.phase is P.COMMITTED and self.until is Until.COMMITTED:
                return Outcome(Ending.COMMITTED)
        if status is not None and status.upgrade_id != uid and self.taken_up:
            # The device took this upgrade up and now works on another one: statuses only move
            # forward, so the other one is newer.
            return Outcome(Ending.SUPERSEDED, status.upgrade_id)
        ours_in_hand = status is not None and status.upgrade_id == uid
        if marker is not None and marker.upgrade_id != uid and not ours_in_hand:
            # Markers are written with compare-and-set after ours: another id is a newer wish,
            # and the device will never start this one.
            return Outcome(Ending.SUPERSEDED, marker.upgrade_id)
        return None


class Describable(Protocol):
    """What :func:`describe` reads: an :class:`UpgradeStatus` or an ``UpgradeSummary``."""

    @property
    def phase(self) -> AgentUpgradePhase: ...
    @property
    def progress(self) -> Progress | None: ...
    @property
    def error_code(self) -> str: ...
    @property
    def error_detail(self) -> str: ...
    @property
    def watch_until(self) -> float | None: ...


def clock_time(ts: float) -> str:
    """``ts`` as the reader's local wall-clock time, ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def describe(s: Describable, now: float) -> str:
    """One line about where ``s`` stands, beyond its phase (empty when there is nothing more).

    A committed upgrade under watch says until when it is watched: "committed, watched until
    10:32:05", and once the window has passed, that the device waits for the new main to run
    steadily before it says Succeeded. The text changes only when the state does (it carries no
    countdown), so a reader that stores it (a ``Device`` status) writes it once per change.
    """
    if s.error_code:
        return f"{s.error_code}: {s.error_detail}".strip(": ")
    if s.progress is not None and s.progress.bytes_total:
        done, total = s.progress.bytes_done, s.progress.bytes_total
        text = f"{100 * done / total:.0f}% of {total / 1048576:.1f} MiB downloaded"
        if s.progress.rate_bps:
            text += f" at {s.progress.rate_bps / 1048576:.1f} MiB/s"
        return text
    if s.phase is P.COMMITTED and s.watch_until is not None:
        until = clock_time(s.watch_until)
        if now < s.watch_until:
            return f"committed, watched until {until}"
        return (
            f"committed; the window ended at {until}, waiting until the new main has run steadily"
        )
    if s.phase is P.COMMITTED:
        return "committed"
    return ""
