"""What a simulation is: how many devices, their labels, their faults, their timings.

Everything a device does differently from the others is drawn here, once, from the seed and
its id (a hash, no random state), so two runs with the same flags simulate the same fleet, and
every worker process computes the same assignment without talking to the others.

A fault given as a share (``Share``: ``"2%"`` or a count ``"5"``) picks exactly that many
devices: the devices ranked first by a hash of (seed, fault, id).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
from dataclasses import dataclass, field

from harmony_fleet.contracts import Share
from harmony_fleet.contracts.ids import device_id as check_device_id
from harmony_fleet.contracts.subjects import SIM_DEVICE_PREFIX
from harmony_fleet.errors import ConfigError, InvalidMessage

log = logging.getLogger(__name__)

#: The most devices one simulation runs (the contracts' bound on a rollout's size).
MAX_SIM_DEVICES = 1_000_000


class Fault(enum.StrEnum):
    """What a simulated device does wrong (``fleet sim --<fault> SHARE``)."""

    SELF_TEST = "fail-self-test"
    """The new version's self-test fails: Failed ``self_test_failed``, nothing changed."""
    SILENT = "silent"
    """The candidate never heartbeats: RolledBack ``cutover_timeout`` after the cutover bound."""
    CRASH_AFTER_COMMIT = "crash-after-commit"
    """The new main crashes inside its watch window: RolledBack ``post_commit``."""
    OFFLINE = "offline"
    """Stops heartbeating (after ``offline_after_s``, for ``offline_for_s`` or for good)."""
    SLOW_DOWNLOAD = "slow-download"
    """Downloads ``slow_factor`` times slower, reporting its progress while Staging."""


@dataclass(frozen=True)
class LabelChoice:
    """One label's values and their weights (``arch=arm64:50%,amd64:50%``)."""

    key: str
    values: tuple[tuple[str, float], ...]

    def pick(self, point: float) -> str:
        """The value at ``point`` in [0, 1) of the weights' cumulative distribution."""
        total = sum(w for _, w in self.values)
        edge = 0.0
        for value, weight in self.values:
            edge += weight / total
            if point < edge:
                return value
        return self.values[-1][0]


def parse_label(text: str) -> LabelChoice:
    """``key=value`` (every device), or ``key=v1:60%,v2:40%`` (weights; ``%`` optional)."""
    key, sep, rest = text.partition("=")
    if not sep or not key or not rest:
        raise ConfigError(f"--label: {text!r} is not KEY=VALUE or KEY=V1:60%,V2:40%")
    values: list[tuple[str, float]] = []
    for part in rest.split(","):
        value, colon, weight = part.partition(":")
        try:
            w = float(weight.rstrip("%")) if colon else 1.0
        except ValueError:
            raise ConfigError(f"--label: {part!r}: the weight is not a number") from None
        if not value or w <= 0:
            raise ConfigError(f"--label: {part!r}: needs a value and a positive weight")
        values.append((value, w))
    return LabelChoice(key, tuple(values))


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    devices: int
    processes: int = 1
    id_prefix: str = SIM_DEVICE_PREFIX
    """Device ids are ``<id_prefix><n>`` (zero-padded); the prefix starts with ``sim-``."""
    version: str = "1.0.0"
    """The version every device runs at start."""
    labels: tuple[LabelChoice, ...] = ()
    faults: dict[Fault, Share] = field(default_factory=dict)
    upgrade_time_s: tuple[float, float] = (10.0, 10.0)
    """Marker seen to candidate running (download and self-test), drawn uniformly per device
    between the two bounds (equal: fixed)."""
    heartbeat_s: float = 5.0
    slow_factor: float = 5.0
    offline_after_s: float = 0.0
    offline_for_s: float | None = None
    """How long an ``offline`` device stays away (None: until the simulation ends)."""
    cutover_s: float | None = None
    """The most a silent candidate's old agent waits (None: the marker's ``cutover_s``)."""
    watch_s: float | None = None
    """The most a post-commit watch lasts (None: the marker's ``watch_s``)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= MAX_SIM_DEVICES:
            raise ConfigError(f"--devices: {self.devices} is outside 1 to {MAX_SIM_DEVICES}")
        if not 1 <= self.processes <= min(64, self.devices):
            raise ConfigError(f"--processes: {self.processes} is outside 1 to 64 (and devices)")
        if not self.id_prefix.startswith(SIM_DEVICE_PREFIX):
            raise ConfigError(
                f"--id-prefix: {self.id_prefix!r} must start with {SIM_DEVICE_PREFIX!r} (ids "
                "reserved for simulated devices)"
            )
        try:
            check_device_id(self.device_id(self.devices - 1))
        except InvalidMessage as exc:
            raise ConfigError(f"--id-prefix: {exc}") from exc
        low, high = self.upgrade_time_s
        if not 0 <= low <= high:
            raise ConfigError(f"--upgrade-time: {low}..{high} is not a range of durations")
        if self.heartbeat_s <= 0 or self.slow_factor < 1:
            raise ConfigError("--heartbeat-interval must be > 0 and --slow-factor >= 1")

    @property
    def width(self) -> int:
        return max(5, len(str(self.devices - 1)))

    def device_id(self, index: int) -> str:
        return f"{self.id_prefix}{index:0{self.width}d}"

    def indexes(self, process: int) -> range:
        """The devices worker ``process`` simulates (every ``processes``-th one)."""
        return range(process, self.devices, self.processes)


def _point(seed: int, what: str, device: str) -> float:
    """A number in [0, 1) that depends only on its arguments."""
    digest = hashlib.blake2b(f"{seed}/{what}/{device}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Profile:
    """One simulated device as the configuration made it."""

    device_id: str
    labels: dict[str, str]
    faults: frozenset[Fault]
    upgrade_time_s: float


def profiles(config: SimConfig, indexes: range | None = None) -> list[Profile]:
    """The profiles of the devices at ``indexes`` (all by default)."""
    ids = [config.device_id(i) for i in range(config.devices)]
    chosen: dict[Fault, set[str]] = {}
    for fault, share in config.faults.items():
        count = share.of(len(ids))
        ranked = sorted(ids, key=functools.partial(_point, config.seed, fault.value))
        chosen[fault] = set(ranked[:count])
    low, high = config.upgrade_time_s
    out = []
    for i in indexes if indexes is not None else range(config.devices):
        device = ids[i]
        labels = {
            c.key: c.pick(_point(config.seed, f"label/{c.key}", device)) for c in config.labels
        }
        faults = frozenset(f for f, members in chosen.items() if device in members)
        took = low + (high - low) * _point(config.seed, "upgrade-time", device)
        out.append(Profile(device, labels, faults, took))
    return out
