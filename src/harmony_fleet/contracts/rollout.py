"""Fleet rollouts: the durable rollout object, its engine-kept status, and per-device progress.

A rollout upgrades a selection of devices to one version: a stratified canary cohort first, then
waves bounded by max-in-flight, halting by itself when a wave fails (docs/rollouts.md). It only
ever writes upgrade markers (through ``write_marker``); the commit authority stays the
coordinator. Three kinds of value, each in its own KV bucket (one codec per bucket):

* :class:`Rollout` (bucket :data:`BUCKET_ROLLOUTS`, key :func:`rollout_key`): what a person
  asked for, and the person's levers (``paused``, ``aborted``, ``undo_requested``). Written by
  ``fleet rollout`` commands.
* :class:`RolloutStatus` (:data:`BUCKET_ROLLOUT_STATUS`, key :func:`status_key`): where the
  rollout stands (phase, wave, soak, halt and why). Written by the operator from the engine's
  plan (``core.rollout``).
* :class:`DeviceProgress` (:data:`BUCKET_ROLLOUT_PROGRESS`, key :func:`progress_key`): one
  device's part in the rollout. Written by the operator from the engine's plan. A device with
  no record is pending.

Admin and operator credentials write them, a viewer reads them, a device has no access at all
(``adapters.nats.permissions``).

Every field is bounded: a rollout is read back after operator restarts and must never let a
broken or hostile value cost memory or name something outside its scope.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Annotated

import msgspec

from harmony_fleet.contracts.ids import (
    DEVICE_ID_PATTERN,
    DeviceIdField,
    LabelKey,
    LabelValue,
    NonNegFloat,
    Sha256Field,
    ShortText,
    UpgradeIdField,
    VersionField,
    whole,
)
from harmony_fleet.contracts.upgrade import UpgradeTimeouts
from harmony_fleet.errors import InvalidMessage

ROLLOUT_SCHEMA_VERSION = 1

#: KV buckets of rollouts, of their status, and of their per-device progress (keys below).
BUCKET_ROLLOUTS = "fleet_rollouts"
BUCKET_ROLLOUT_STATUS = "fleet_rollout_status"
BUCKET_ROLLOUT_PROGRESS = "fleet_rollout_progress"

#: A rollout's name is a DNS label, like a device id: it is a KV key token and a Kubernetes name.
ROLLOUT_NAME_PATTERN = DEVICE_ID_PATTERN
RolloutNameField = Annotated[str, msgspec.Meta(pattern=ROLLOUT_NAME_PATTERN, max_length=63)]

#: ``Rollout.created_by`` of a rollout a Kubernetes ``Rollout`` resource created, followed by
#: ``<namespace>/<name>``: its levers are that resource's spec (``fleet rollout pause`` refuses).
CREATED_BY_KUBERNETES = "kubernetes:"

#: The most devices one rollout may address (bounds every count below).
MAX_DEVICES = 1_000_000
#: The longest a rollout may wait on anything (soak, spread): 30 days, in seconds.
MAX_DURATION_S = 30 * 86400.0

#: Labels a device reports that the canary cohort is stratified on by default.
LABEL_ARCH = "arch"
LABEL_HARDWARE = "hardware_model"
LABEL_OS_RELEASE = "os_release"
LABEL_LINK = "link_type"
DEFAULT_STRATA = (LABEL_ARCH, LABEL_HARDWARE, LABEL_OS_RELEASE, LABEL_LINK)

#: Labels carrying the facts the pre-flight gates and the windows read (see docs/rollouts.md).
LABEL_EXECUTOR = "executor"
LABEL_FREE_DISK = "free_disk_bytes"
LABEL_TIME_ZONE = "time_zone"

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_DEVICES)]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
Duration = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_DURATION_S)]
Reason = Annotated[str, msgspec.Meta(max_length=512)]
Wave = Annotated[int, msgspec.Meta(ge=0, le=MAX_DEVICES)]
ClockTime = Annotated[str, msgspec.Meta(pattern=whole(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"))]
TimeZoneName = Annotated[
    str,
    msgspec.Meta(pattern=whole(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}"), max_length=64),
]
Weekday = Annotated[int, msgspec.Meta(ge=0, le=6)]
"""Monday is 0, as :meth:`datetime.date.weekday`."""

#: One entry of a version's skip list: a device id (``edge-07``) or a label and its value
#: (``hardware_model=rpi3``): the devices a rollout of that version must leave alone. The list
#: is signed with the release (the target's ``custom.skip``, docs/releases.md).
SKIP_ENTRY_PATTERN = whole(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?|[A-Za-z0-9][A-Za-z0-9._/-]{0,62}=[^\n]{0,256})"
)
#: The most entries one version's skip list may hold.
MAX_SKIP_ENTRIES = 1000

_ROLLOUT_RE = re.compile(ROLLOUT_NAME_PATTERN)
_SKIP_RE = re.compile(SKIP_ENTRY_PATTERN)
_SHARE_RE = re.compile(r"(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<pct>%?)")


class Share(msgspec.Struct, frozen=True, kw_only=True):
    """A number of devices, absolute (``count``) or relative to the rollout's size (``percent``):
    exactly one is set."""

    count: Count | None = None
    percent: Percent | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ValueError("a share is either a count or a percent, exactly one of them")

    def of(self, total: int) -> int:
        """How many of ``total`` devices: a percent rounds up (2% of 10 is 1, not 0)."""
        if self.count is not None:
            return min(self.count, total)
        assert self.percent is not None
        return min(total, math.ceil(total * self.percent / 100.0 - 1e-9))

    @classmethod
    def parse(cls, text: str) -> Share:
        """``"5"`` (a count) or ``"2%"`` / ``"2.5%"`` (a percent)."""
        match = _SHARE_RE.fullmatch(text.strip())
        if match is None:
            raise InvalidMessage("share", f"{text!r} is neither a count nor a percent like 10%")
        if match["pct"]:
            value = float(match["n"])
            if value > 100.0:
                raise InvalidMessage("share", f"{text!r} is more than 100%")
            return cls(percent=value)
        if "." in match["n"] or int(match["n"]) > MAX_DEVICES:
            raise InvalidMessage("share", f"{text!r} is not a whole count up to {MAX_DEVICES}")
        return cls(count=int(match["n"]))

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent:g}%"


class MaintenanceWindow(msgspec.Struct, frozen=True, kw_only=True):
    """When a device may start: on ``days``, from ``start`` to ``end`` local time (an ``end``
    before ``start`` crosses midnight; the day is the one the window opens on). The time zone is
    ``time_zone`` when set (the rollout's), else the device's own (its ``time_zone`` label, UTC
    when it has none). Text form: ``Mon-Fri 02:00-05:00 Europe/Paris``
    (``core.rollout.windows.parse_window``)."""

    days: Annotated[list[Weekday], msgspec.Meta(min_length=1, max_length=7)]
    start: ClockTime
    end: ClockTime
    time_zone: TimeZoneName | None = None

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("a window's start and end must differ")


class Rollout(msgspec.Struct, frozen=True, kw_only=True):
    """A rollout as a person asked for it. Key :func:`rollout_key`."""

    v: int = ROLLOUT_SCHEMA_VERSION
    name: RolloutNameField
    version: VersionField
    selector: Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=32)] = {}
    """Labels a device must all carry to be part of the rollout (empty: every device)."""
    canary: Share = Share(count=5)
    strata: Annotated[list[LabelKey], msgspec.Meta(max_length=8)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_STRATA)
    )
    """The labels the canary cohort must cover every value of."""
    max_in_flight: Share = Share(percent=10.0)
    """Wave size, and the most devices upgrading (or being undone) at any moment (at least 1)."""
    max_downloads: Annotated[int, msgspec.Meta(ge=1, le=MAX_DEVICES)] | None = None
    """The most devices downloading at once (None: max-in-flight alone bounds it)."""
    spread_s: Duration = 30.0
    """A wave's starts are spread over this long (per-device jitter, stable across replays)."""
    soak_s: Duration = 600.0
    """How long the canaries must have all Succeeded before the first wave starts."""
    halt_failure_rate: Percent = 10.0
    """A wave whose failed share exceeds this halts the rollout (canaries: any failure)."""
    windows: Annotated[list[MaintenanceWindow], msgspec.Meta(max_length=16)] = []
    """A device starts only inside one of these (none: any time)."""
    deadline: NonNegFloat | None = None
    """Unix time after which devices not yet started are skipped."""
    timeouts: UpgradeTimeouts = UpgradeTimeouts()
    """The bounds of each device's upgrade, its post-commit watch window included (a device
    counts as Succeeded only once its window passed)."""
    created_by: ShortText = ""
    created_at: NonNegFloat
    paused: bool = False
    aborted: bool = False
    undo_requested: bool = False


class RolloutPhase(enum.StrEnum):
    """Where a rollout stands; the transitions are the table in ``core.rollout.phases``."""

    CANARY = "Canary"
    SOAKING = "Soaking"
    WAVES = "Waves"
    PAUSED = "Paused"
    HALTED = "Halted"
    DONE = "Done"
    ABORTED = "Aborted"
    UNDOING = "Undoing"
    UNDONE = "Undone"


class DeviceState(enum.StrEnum):
    """One device's part in a rollout (and, separately, in its undo)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    SKIPPED = "skipped"


#: States that count against a wave's failure rate.
FAILURE_STATES = frozenset({DeviceState.ROLLED_BACK, DeviceState.FAILED})
#: States nothing more happens in.
FINAL_STATES = frozenset(
    {DeviceState.SUCCEEDED, DeviceState.ROLLED_BACK, DeviceState.FAILED, DeviceState.SKIPPED}
)


class DeviceOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One device and why (in a halt report)."""

    device_id: DeviceIdField
    state: DeviceState
    reason: Reason = ""


class RolloutStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a rollout stands, as the engine last decided. Key :func:`status_key`."""

    v: int = ROLLOUT_SCHEMA_VERSION
    name: RolloutNameField
    phase: RolloutPhase = RolloutPhase.CANARY
    wave: Wave = 0
    """The wave in hand: 0 is the canary cohort."""
    wave_started_at: NonNegFloat | None = None
    soak_until: NonNegFloat | None = None
    paused_from: RolloutPhase | None = None
    halted_at: NonNegFloat | None = None
    halt_reason: Reason = ""
    halted_devices: Annotated[list[DeviceOutcome], msgspec.Meta(max_length=100)] = []
    """The failures that caused the halt (the first 100)."""
    counts: Annotated[dict[DeviceState, Count], msgspec.Meta(max_length=6)] = {}
    undo_counts: Annotated[dict[DeviceState, Count], msgspec.Meta(max_length=6)] = {}
    updated_at: NonNegFloat = 0.0


class DeviceProgress(msgspec.Struct, frozen=True, kw_only=True):
    """One device in one rollout. Key :func:`progress_key`; no record means pending."""

    v: int = ROLLOUT_SCHEMA_VERSION
    rollout: RolloutNameField
    device_id: DeviceIdField
    state: DeviceState
    reason: Reason = ""
    wave: Wave | None = None
    """The wave it was started in (0: canary); None when it was never started."""
    previous_version: VersionField | None = None
    """What it ran when the rollout started it: what an undo returns it to."""
    previous_sha256: Sha256Field | None = None
    """That version's artifact hash, as the device reported it (the undo marker needs it)."""
    upgrade_id: UpgradeIdField | None = None
    not_before: NonNegFloat | None = None
    """Its marker is written at this time (the wave's spread), not before."""
    undo: DeviceState | None = None
    undo_upgrade_id: UpgradeIdField | None = None
    undo_reason: Reason = ""
    updated_at: NonNegFloat = 0.0


def rollout_name(value: str) -> str:
    """Validate a rollout name from a flag; raise InvalidMessage naming ``name``."""
    if not _ROLLOUT_RE.fullmatch(value):
        raise InvalidMessage(
            "name",
            f"{value!r} is not a valid rollout name (lowercase letters, digits and '-', "
            "1-63 characters, starting and ending with a letter or digit)",
            type_name="rollout name",
        )
    return value


def rollout_key(name: str) -> str:
    """The key of a rollout in :data:`BUCKET_ROLLOUTS` (and of its status): its name."""
    return name


def status_key(name: str) -> str:
    """The key of a rollout's status in :data:`BUCKET_ROLLOUT_STATUS`."""
    return name


def progress_key(name: str, device: str) -> str:
    """The key of one device's progress in :data:`BUCKET_ROLLOUT_PROGRESS`: ``<rollout>.<device>``
    (names and device ids are DNS labels, without dots, so ``<rollout>.*`` lists one rollout)."""
    return f"{name}.{device}"


def skip_entry(text: str) -> str:
    """Validate one skip-list entry from a flag; raise InvalidMessage naming ``skip``."""
    if len(text) > 320 or not _SKIP_RE.fullmatch(text):
        raise InvalidMessage(
            "skip",
            f"{text!r} is neither a device id nor a label=value",
            type_name="skip entry",
        )
    return text


def skip_list(value: object) -> tuple[str, ...]:
    """The valid entries of a skip list read from signed metadata (``custom.skip``); anything
    else is left out (only a broken publish could put it there; it then skips nobody)."""
    if not isinstance(value, list):
        return ()
    return tuple(
        e for e in value[:MAX_SKIP_ENTRIES] if isinstance(e, str) and _SKIP_RE.fullmatch(e)
    )
