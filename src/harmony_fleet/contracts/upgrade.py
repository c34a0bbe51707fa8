"""Upgrade marker and upgrade status: the two KV values of the self-upgrade protocol (ADR-022).

A device's **marker** (what to install) is written by one function,
``adapters.nats.fleet_kv.write_marker``, with compare-and-set; ``fleet upgrade``, ``fleet
rollback``, the operator's Kubernetes mode and the local fleet all call it. Its agent alone writes
its **status** (how it is going). Both carry the ``upgrade_id``, which is how replays are
recognised: an agent never runs an ``upgrade_id`` it has already finished. The buckets are
created by the operator or the server bootstrap, never by an agent or a CLI command.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from harmony_fleet.contracts.ids import (
    DeviceIdField,
    InstanceIdField,
    NonNegFloat,
    NonNegInt,
    Sha256Field,
    ShortText,
    UpgradeIdField,
    VersionField,
)

UPGRADE_SCHEMA_VERSION = 1


class AgentUpgradePhase(enum.StrEnum):
    """Where one upgrade of one device stands. See docs/adr/022-agent-self-upgrade.md."""

    REQUESTED = "Requested"
    """The marker was written (``write_marker``); no agent has picked it up yet."""
    STAGING = "Staging"
    """Preflight, layout self-heal, download and SHA-256 verification into versions/<target>/."""
    VERIFYING = "Verifying"
    """Running the new artifact's ``--self-test`` with a timeout."""
    CUTOVER_READY = "CutoverReady"
    """The candidate runs beside the old agent; the old agent is armed for the stop."""
    HOLDING = "Holding"
    """The old agent sees the candidate's heartbeats but no stop has come: bounded wait."""
    COMMITTED = "Committed"
    """The stop came; ``current`` points at the target; the old agent has handed over. While the
    post-commit watch window is open (``UpgradeStatus.watch_until``) the new main instance is on
    probation: a crash loop or lost heartbeats still return the device to the previous version."""
    SUCCEEDED = "Succeeded"
    """The new version runs as the device's main instance and its watch window passed."""
    ROLLED_BACK = "RolledBack"
    """The candidate was reverted before the commit, or the new main failed inside the watch
    window (``error_code`` ``post_commit``); the previous version runs."""
    FAILED = "Failed"
    """Staging or verification failed, or the marker was refused: nothing outside staging
    changed."""
    SUPERSEDED = "Superseded"
    """A newer marker replaced this one before its candidate existed (it was aborted while
    staging or verifying, or never started because it waited behind another upgrade):
    nothing outside staging changed, and ``superseded_by`` names the newer upgrade."""

    @property
    def terminal(self) -> bool:
        """No further transition will happen for this ``upgrade_id``."""
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset(
    {
        AgentUpgradePhase.SUCCEEDED,
        AgentUpgradePhase.ROLLED_BACK,
        AgentUpgradePhase.FAILED,
        AgentUpgradePhase.SUPERSEDED,
    }
)


class ErrorCode(enum.StrEnum):
    """Machine-readable reason written in ``UpgradeStatus.error_code`` (a plain string there, so
    an older reader accepts a code it does not know) and kept in the agent's local state file."""

    ALREADY_RUNNING = "already_running"
    VERSION_FAILED_BEFORE = "version_failed_before"
    SUPERSEDED = "superseded"
    STAGING_TIMEOUT = "staging_timeout"
    INTEGRITY = "integrity"
    INSUFFICIENT_SPACE = "insufficient_space"
    DOWNLOAD_REJECTED = "download_rejected"
    DOWNLOAD_INTERRUPTED = "download_interrupted"
    LAYOUT_BROKEN = "layout_broken"
    STAGING_FAILED = "staging_failed"
    SELF_TEST_FAILED = "self_test_failed"
    SELF_TEST_INCONCLUSIVE = "self_test_inconclusive"
    """The self-test failed while NATS was unreachable (its own NATS check, or this agent's
    connection): it proves nothing about the version, which is not put on the skip list."""
    SELF_TEST_TIMEOUT = "self_test_timeout"
    CANDIDATE_START_FAILED = "candidate_start_failed"
    CANDIDATE_EXITED = "candidate_exited"
    CUTOVER_TIMEOUT = "cutover_timeout"
    HOLD_TIMEOUT = "hold_timeout"
    COMMIT_FAILED = "commit_failed"
    REVERT_FAILED = "revert_failed"
    AGENT_RESTARTED = "agent_restarted"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    LAYOUT_INCONSISTENT = "layout_inconsistent"
    POST_COMMIT = "post_commit"
    NOT_INSTALLED = "not_installed"
    UNTRUSTED = "untrusted"
    """The signed release metadata does not vouch for the target (or it is a downgrade below
    the device's version floor): ``error_detail`` starts with the attack class, e.g.
    ``unsigned target``, ``bad signature``, ``expired metadata``, ``downgrade below floor``."""
    INTERNAL = "internal_error"


#: Exit code of ``agent run --self-test`` when the only checks that failed are of the
#: environment it runs in (NATS could not be reached): the old agent must not blame the version
#: for it (sysexits' EX_UNAVAILABLE, as ``fleet`` uses for "NATS unreachable").
SELF_TEST_UNAVAILABLE_EXIT = 69


class UpgradeTimeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on each phase, chosen by whoever requested the upgrade."""

    download_s: NonNegFloat = 2 * 3600.0
    """Overall deadline for the download, retries included (slow links are normal)."""
    self_test_s: NonNegFloat = 60.0
    cutover_s: NonNegFloat = 120.0
    """How long the old agent waits for the stop when it sees no candidate heartbeat."""
    hold_s: NonNegFloat = 600.0
    """How long it waits for the stop while it does see candidate heartbeats (partition)."""
    watch_s: NonNegFloat = 600.0
    """After the commit, how long the new main instance is watched: if it crash-loops or stops
    heartbeating inside this window the device returns to the previous version by itself. 0
    turns the watch off (Succeeded as soon as the new main runs)."""
    watch_max_failures: Annotated[int, msgspec.Meta(ge=1)] = 3
    """Failed starts of the new main inside the watch window that make it a crash loop."""


class ArtifactSource(enum.StrEnum):
    """Where the agent gets the target artifact from."""

    DOWNLOAD = "download"
    """Fetch ``artifact_url`` and verify ``sha256`` while downloading (a new version)."""
    INSTALLED = "installed"
    """The version is already in ``versions/<target>/`` (``fleet rollback``): nothing is
    downloaded, ``artifact_url`` may be empty, and the installed artifact must still hash to
    ``sha256``, the value the device recorded when it installed that version."""


class UpgradeMarker(msgspec.Struct, frozen=True, kw_only=True):
    """What a device should run. KV bucket ``fleet_upgrade_marker``, key = device; written with
    compare-and-set by ``write_marker`` (``fleet upgrade``, ``fleet rollback``, Kubernetes mode)."""

    v: int = UPGRADE_SCHEMA_VERSION
    upgrade_id: UpgradeIdField
    device_id: DeviceIdField
    target_version: VersionField
    artifact_url: ShortText
    sha256: Sha256Field
    size: NonNegInt | None = None
    requested_at: NonNegFloat
    requested_by: ShortText = ""
    force: bool = False
    """Install even if this version failed on this device before."""
    timeouts: UpgradeTimeouts = UpgradeTimeouts()
    source: ArtifactSource = ArtifactSource.DOWNLOAD
    lease_epoch: NonNegInt = 0
    """The operator lease epoch of the operator that wrote it (ADR-023); 0: not an operator
    (``fleet upgrade``, ``fleet rollback``)."""


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """Download progress, as reported in the status while Staging."""

    bytes_done: NonNegInt = 0
    bytes_total: NonNegInt | None = None
    rate_bps: NonNegFloat = 0.0
    retries: NonNegInt = 0


class UpgradeStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How one upgrade is going. KV bucket ``fleet_upgrade_status``, key = device; agent writes."""

    v: int = UPGRADE_SCHEMA_VERSION
    upgrade_id: UpgradeIdField
    device_id: DeviceIdField
    phase: AgentUpgradePhase
    from_version: VersionField
    to_version: VersionField
    instance_id: InstanceIdField
    """The agent instance that wrote this status."""
    attempt: NonNegInt = 1
    progress: Progress | None = None
    error_code: str = ""
    error_detail: ShortText = ""
    candidate_instance_id: InstanceIdField | None = None
    candidate_exit_code: int | None = None
    candidate_log_tail: list[ShortText] = []
    started_at: NonNegFloat
    updated_at: NonNegFloat
    pending_upgrade_id: UpgradeIdField | None = None
    """A newer marker the agent has seen but not started: it starts only once this upgrade is
    terminal (ADR-022, "markers in flight")."""
    watch_until: NonNegFloat | None = None
    """Unix time at which the post-commit watch window ends (set from Committed on); the status
    turns Succeeded only after it, or RolledBack (``post_commit``) inside it."""
    previous_version: VersionField | None = None
    """The version kept on disk to return to (what ``fleet rollback`` asks for), if any."""
    previous_sha256: Sha256Field | None = None
    """SHA-256 of ``previous_version``'s artifact, as recorded when the device installed it."""
    superseded_by: UpgradeIdField | None = None
    """With phase ``Superseded``: the upgrade that replaced this one."""
