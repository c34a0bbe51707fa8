"""Facts the agent reports about its device in its heartbeat labels, for rollouts.

A rollout stratifies its canaries on ``arch`` and ``os_release`` (and on ``hardware_model`` and
``link_type``, which only a person knows: ``--label``), gates devices on ``executor``, and opens
maintenance windows in the device's ``time_zone`` (docs/rollouts.md). These are read once, at
start: they do not change while the agent runs, so they never make the operator write the
registry again. A label given with ``--label`` wins over a fact of the same name. Free disk is
not reported yet: it changes all the time, and every change of a label is a registry write.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

log = logging.getLogger(__name__)

#: ``platform.machine()`` spellings folded onto the names people and package managers use.
ARCH_NAMES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
MAX_VALUE = 256


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
