"""Facts the agent reports about its device in its heartbeat labels, for rollouts.

A rollout stratifies its canaries on ``arch`` and ``os_release`` (and on ``hardware_model`` and
``link_type``, which only a person knows: ``--label``), gates devices on ``executor``, and opens
maintenance windows in the device's ``time_zone`` (docs/rollouts.md). These are read once, at
start: they do not change while the agent runs, so they never make the operator write the
registry again. A label given with ``--label`` wins over a fact of the same name.

Free disk (``free_disk_bytes``, for the rollout's disk gate: at least twice the artifact) does
change all the time, and every change of a label is a registry write. So an agent that may
upgrade itself (``--prefix``) reports it **coarsely** (:class:`FreeDisk`): the free bytes of the
prefix's filesystem (read at most once a minute) rounded *down* to a power of two, so the gate
never sees more than there is, moving up only to a power the disk has 1.5 times free, so a disk
hovering around a boundary does not make the label flap. The label then changes when free disk
halves or doubles, not on every heartbeat.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: ``platform.machine()`` spellings folded onto the names people and package managers use.
ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
MAX_VALUE = 256
#: How old the free-disk reading behind the label may be (:class:`FreeDisk`).
FREE_DISK_REFRESH_S = 60.0


def arch(machine: str) -> str:
    folded = machine.strip().lower()
    return ARCH_NAMES.get(folded, folded)


def os_release(text: str) -> str:
    """``ID-VERSION_ID`` from the text of ``/etc/os-release`` (``debian-12``), or ""."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    return "-".join(v for v in (fields.get("ID", ""), fields.get("VERSION_ID", "")) if v)


def time_zone(tz_env: str | None, localtime_target: str | None) -> str:
    """The device's IANA zone: ``TZ`` if set (without a leading ``:``), else where
    ``/etc/localtime`` points below ``zoneinfo/``, else ""."""
    if tz_env:
        return tz_env.lstrip(":")
    if localtime_target and "zoneinfo/" in localtime_target:
        return localtime_target.split("zoneinfo/", 1)[1]
    return ""


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _link(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def device_facts(executor: str) -> dict[str, str]:
    """The facts of this device (empty values left out, each bounded like a label)."""
    facts = {
        "arch": arch(platform.machine()),
        "os_release": os_release(_read(Path("/etc/os-release"))),
        "executor": executor,
        "time_zone": time_zone(os.environ.get("TZ"), _link(Path("/etc/localtime"))),
    }
    return {k: v[:MAX_VALUE] for k, v in facts.items() if v}


def _power_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def coarse_free_disk(free: int, reported: int | None) -> int:
    """``free`` bytes as the label reports them, given what it ``reported`` last (see the
    module docstring): a power of two at most ``free`` (0 for a full disk); down at once, up
    only to a power the disk has 1.5 times free."""
    if reported is None or free < reported:
        return _power_floor(free)
    return max(reported, _power_floor(free * 2 // 3))


class FreeDisk:
    """The ``free_disk_bytes`` fact of one filesystem, coarse, read again at most every
    :data:`FREE_DISK_REFRESH_S` (on ``mono``, a monotonic clock): asked at every heartbeat, it
    answers from the last reading in between. A label that may move only when free disk halves
    or doubles needs no fresher reading, and the rollout's disk gate is judged long after."""

    def __init__(
        self,
        read: Callable[[], int],
        *,
        refresh_s: float = 0.0,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._refresh_s = refresh_s
        self._mono = mono
        self._read_at: float | None = None
        self.reported: int | None = None

    @classmethod
    def of(cls, path: Path) -> FreeDisk:
        return cls(lambda: shutil.disk_usage(path).free, refresh_s=FREE_DISK_REFRESH_S)

    def value(self) -> str | None:
        """The label's value now, or None when the filesystem cannot be read."""
        now = self._mono()
        if (
            self.reported is not None
            and self._read_at is not None
            and now - self._read_at < self._refresh_s
        ):
            return str(self.reported)
        try:
            free = self._read()
        except OSError as exc:
            log.debug("free disk unreadable", extra={"error": str(exc)})
            return None
        self._read_at = now
        self.reported = coarse_free_disk(max(free, 0), self.reported)
        return str(self.reported)
