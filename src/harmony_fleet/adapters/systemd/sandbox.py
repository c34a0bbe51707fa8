"""The agent's systemd sandbox: one list of settings for the main unit and every candidate unit.

The agent runs as root (it replaces its own files and starts units), so the sandbox is what
keeps a compromised agent process from the rest of the device. :func:`sandbox` gives the
settings as ``(key, value)`` pairs; the unit file (:mod:`.unit_file`) writes them as lines and
the runner (:mod:`.runner`) hands them to ``systemd-run`` as ``--property=`` values, so the
candidate of an upgrade runs in exactly the sandbox of the main that it replaces.

What the agent writes, found by running the systemd tier under it: ``<prefix>`` (downloads,
``versions/``, ``current``, the artifacts' extraction beside them) and its state directory
(upgrade record, watch notes). Everything else is read-only (``ProtectSystem=strict``). It
talks to systemd through ``/run/systemd/private`` (a socket: connecting to it is not a write to
a read-only mount) and to the journal by reading it. It needs no capability: its files are
root's own (no ``CAP_DAC_OVERRIDE``), systemd trusts root on its private socket and does every
privileged thing itself (start, kill, stop units), so ``CapabilityBoundingSet=`` is empty.

Left out, with the reason (docs/install.md, "The sandbox"): ``PrivateNetwork`` and
``IPAddressDeny`` (it talks to NATS and artifact servers), ``DynamicUser``/``User=`` (it must
replace its own files under a root-owned prefix and manage units), ``ProtectProc=invisible``
(every process it could see runs as root too, so it hides nothing), ``RemoveIPC`` (no effect for
root), ``UMask=`` (left to the install's own modes).
"""

from __future__ import annotations

import logging
from pathlib import Path

from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: The settings that do not depend on the install's paths, in the order they are written.
FIXED: tuple[tuple[str, str], ...] = (
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("PrivateTmp", "yes"),
    ("ProtectHome", "yes"),
    ("CapabilityBoundingSet", ""),
    ("PrivateDevices", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
)


def writable_paths(prefix: Path, state_dir: Path) -> str:
    """``ReadWritePaths=``: the prefix and the state dir, each double-quoted (either may hold a
    blank). A quote, backslash or ``%`` in them is refused: no escaping reads back the same in
    both a unit file (which expands ``%`` specifiers) and ``systemd-run`` (which does not)."""
    words = []
    for path in (prefix, state_dir):
        text = str(path)
        if not path.is_absolute() or any(c in text for c in '"\\%') or not text.isprintable():
            raise ConfigError(f"{text!r} cannot be a writable path of the agent's sandbox")
        words.append(f'"{text}"')
    return " ".join(words)


def sandbox(prefix: Path, state_dir: Path) -> list[tuple[str, str]]:
    """Every sandbox setting of the agent installed under ``prefix`` with ``state_dir``."""
    return [*FIXED[:2], ("ReadWritePaths", writable_paths(prefix, state_dir)), *FIXED[2:]]
