"""Agent configuration: one frozen value built by the CLI from flags and environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harmony_fleet.adapters.http.urls import HTTPS_ONLY, ArtifactAccess
from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.contracts import DeviceId, Role, UpgradeId
from harmony_fleet.errors import ConfigError


def default_state_dir(device: str) -> Path:
    """``/var/lib/harmony-fleet/<device>`` for root (a service), else the user's state dir."""
    if os.geteuid() == 0:
        return Path("/var/lib/harmony-fleet") / device
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harmony-fleet" / device


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    device_id: DeviceId
    state_dir: Path
    nats: NatsOptions = field(default_factory=NatsOptions)
    heartbeat_interval_s: float = 5.0
    jitter: float = 0.1
    """Each interval is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    role: Role = Role.MAIN
    upgrade_id: UpgradeId | None = None
    """Set on a candidate: the upgrade it was started for."""
    labels: dict[str, str] = field(default_factory=dict)
    install_prefix: Path | None = None
    """The layout root (``versions/``, ``current``) when this agent may upgrade itself."""
    executor: str = "process"
    """How candidates are started: ``process`` (detached process) or ``systemd``."""
    service: str = "harmony-fleet-agent"
    """The systemd service this agent runs as (``--executor systemd``)."""
    trust_root: Path | None = None
    """``--trust-root``: the release manager's ``root.json``, pinned into the state dir at start
    (``adapters.tuf.pin``); a pin made before (``fleet agent install``) is used without it."""
    release_mirror: str | None = None
    """``--release-mirror``: an HTTPS base URL serving the signed repository (``metadata/``,
    ``targets/``) instead of NATS."""
    keep_versions: int = 2
    """Versions garbage collection keeps after a successful upgrade (``--keep-versions``); the
    running and the previous version are always among them, so never fewer than 2."""
    artifacts: ArtifactAccess = HTTPS_ONLY
    """Where upgrade artifacts may come from: ``https`` (plus ``--artifact-ca``), plain ``http``
    only from loopback unless ``--allow-http-artifacts``."""

    def __post_init__(self) -> None:
        if not 0.1 <= self.heartbeat_interval_s <= 3600:
            raise ConfigError(
                f"--heartbeat-interval must be between 0.1 and 3600 seconds, "
                f"got {self.heartbeat_interval_s}"
            )
        if not 0 <= self.jitter < 0.5:
            raise ConfigError(f"jitter must be in [0, 0.5), got {self.jitter}")
        if self.keep_versions < 2:
            raise ConfigError(
                f"--keep-versions must be at least 2 (the running and the previous version), "
                f"got {self.keep_versions}"
            )
        if self.role is Role.CANDIDATE and self.upgrade_id is None:
            raise ConfigError("a candidate agent needs --upgrade-id")
