"""The agent's systemd service unit as data: :class:`InstallSpec` in, the unit file's text out.

Pure (no I/O but reading an earlier unit's parameters back): tests compare the text, and an
install compares it with what is on disk before it writes. The unit's ``ExecStart`` is
:class:`~harmony_fleet.adapters.device.launch.LaunchSpec`'s vector for
``<prefix>/current/agent`` with ``--prefix`` and ``--executor systemd``, so the main instance is
started exactly like the self-test and the candidate, and it always runs whatever ``current``
points at. ``StartLimitIntervalSec=0`` because a device agent must never give up restarting.

**The post-commit watch** (ADR-022, "After the commit") is the unit's own: ``WatchdogSec=``
(the main pings on every heartbeat tick; the unit's value leaves room for a slow start, and the
main's first ping tightens it to the liveness bound), ``ExecStopPost=`` and ``ExecStartPre=``
hooks that run ``<prefix>/launcher/agent agent watch-hook ...`` (``adapters.systemd.watch_hook``).
``FLEET_POST_COMMIT_WATCH=systemd`` tells the agent that this unit keeps the watch. The unit
file carries the install's parameters in a comment line, so ``uninstall`` (and a later install)
can find the prefix and state directory without being told again.

**No secret in the unit** (it is world-readable): a password goes to the env file (0600), and the
NATS credential files (``--nats-creds``, the CA, a client key) are copied by the install into
:attr:`InstallSpec.credentials_dir` (0700, files 0600); the unit names the copies, never the
files the person installing gave. **The sandbox** (:mod:`.sandbox`) is written into the unit's
``[Service]`` section; the candidate units get the same settings from the runner.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.notes import WATCHED_BY_ENV
from harmony_fleet.adapters.systemd.sandbox import sandbox
from harmony_fleet.adapters.systemd.units import exec_line, service_name, unit_of, unit_value
from harmony_fleet.contracts.ids import DeviceId
from harmony_fleet.core.upgrade.watch import first_touch_bound, stale_after
from harmony_fleet.errors import ConfigError

UNIT_DIR = Path("/etc/systemd/system")
ENV_DIR = Path("/etc/harmony-fleet")
DEFAULT_PREFIX = Path("/opt/harmony-fleet")
_META = "# harmony-fleet-install: "
LAUNCHER_DIR = "launcher"
#: The NATS flags that name a file, and the name of the install's own copy of each.
CREDENTIAL_FILES = {
    "--nats-creds": "nats.creds",
    "--nats-tls-ca": "ca.pem",
    "--nats-tls-cert": "client-cert.pem",
    "--nats-tls-key": "client-key.pem",
}


@dataclass(frozen=True, kw_only=True)
class InstallSpec:
    """Everything an install decides; the unit file is a pure function of it."""

    device_id: DeviceId
    prefix: Path = DEFAULT_PREFIX
    state_dir: Path
    service: str = "harmony-fleet-agent"
    nats_args: tuple[str, ...] = ()
    """``--nats URL`` (repeated), ``--nats-user``, ``--insecure``: no file, never the password."""
    nats_files: Mapping[str, Path] = field(default_factory=dict)
    """The files the person installing gave, by flag (:data:`CREDENTIAL_FILES`): each is copied
    into :attr:`credentials_dir`, and the unit's command line names the copy."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """Environment for the env file (``FLEET_NATS_PASSWORD``): kept off every command line."""
    heartbeat_interval_s: float = 5.0
    keep_versions: int = 2
    """``--keep-versions`` of the agent (on its command line only when not the default)."""
    agent_args: tuple[str, ...] = ()
    """More agent flags for the unit's command line (``--allow-http-artifacts``,
    ``--artifact-ca FILE``), handed on to candidates like the rest."""
    python: str = field(default_factory=lambda: getattr(sys, "_base_executable", sys.executable))
    """The interpreter that runs the artifact (a venv's base Python, which outlives the venv)."""
    unit_dir: Path = UNIT_DIR
    env_dir: Path = ENV_DIR

    def __post_init__(self) -> None:
        service_name(self.service)
        for path in (self.prefix, self.state_dir, Path(self.python)):
            if not path.is_absolute():
                raise ConfigError(f"{path} must be an absolute path")
        for flag in self.nats_files:
            if flag not in CREDENTIAL_FILES:
                raise ConfigError(f"{flag} is not a NATS credential file flag")

    @property
    def unit_name(self) -> str:
        return unit_of(self.service)

    @property
    def unit_path(self) -> Path:
        return self.unit_dir / self.unit_name

    @property
    def env_path(self) -> Path:
        return self.env_dir / f"{service_name(self.service)}.env"

    @property
    def credentials_dir(self) -> Path:
        """The install's own copies of the NATS credential files (root only: 0700)."""
        return self.env_dir / service_name(self.service)

    def credential_path(self, flag: str) -> Path:
        """Where the copy of the file given with ``flag`` lives."""
        return self.credentials_dir / CREDENTIAL_FILES[flag]

    def launch(self) -> LaunchSpec:
        files = [
            (flag, str(self.credential_path(flag)))
            for flag in CREDENTIAL_FILES
            if flag in self.nats_files
        ]
        return LaunchSpec(
            python=self.python,
            device_id=self.device_id,
            state_dir=self.state_dir,
            nats_args=(*self.nats_args, *(word for pair in files for word in pair)),
            extra_args=(
                "--heartbeat-interval",
                f"{self.heartbeat_interval_s:g}",
                "--prefix",
                str(self.prefix),
                "--executor",
                "systemd",
                *(("--keep-versions", str(self.keep_versions)) if self.keep_versions != 2 else ()),
                *self.agent_args,
            ),
        )

    def main_argv(self) -> list[str]:
        """What the service runs: ``current``'s artifact, resolved at every (re)start."""
        return self.launch().argv(self.prefix / "current" / "agent")

    @property
    def launcher_path(self) -> Path:
        """The artifact copy that runs the unit's watch hooks (never the version on trial)."""
        return self.prefix / LAUNCHER_DIR / "agent"

    def hook_argv(self, hook: str) -> list[str]:
        """``ExecStartPre=``/``ExecStopPost=``: the launcher's ``agent watch-hook HOOK``."""
        return [
            self.python,
            str(self.launcher_path),
            *["agent", "watch-hook", hook],
            *["--prefix", str(self.prefix), "--state-dir", str(self.state_dir)],
            *["--service", self.unit_name],
        ]

    @property
    def watchdog_s(self) -> float:
        """``WatchdogSec``: room for a slow start (the first ping comes after imports, and a
        loaded board must not be killed, nor rolled back, for that). The main tightens it to
        :attr:`stale_after_s` with its first ping (``notify.WatchdogNotifier``)."""
        return first_touch_bound(self.stale_after_s)

    @property
    def stale_after_s(self) -> float:
        """The liveness bound of the post-commit watch, once the main runs."""
        return stale_after(self.heartbeat_interval_s)


def render_unit(spec: InstallSpec) -> str:
    """The unit file's text (pure: tests compare it, installs compare it before writing)."""
    meta = {
        "device_id": spec.device_id,
        "prefix": str(spec.prefix),
        "state_dir": str(spec.state_dir),
    }
    lines = [
        "# Written by `fleet agent install`; `fleet agent uninstall` removes it.",
        _META + json.dumps(meta, sort_keys=True),
        "[Unit]",
        f"Description={unit_value(f'harmony-fleet agent (device {spec.device_id})')}",
        "Wants=network-online.target",
        "After=network-online.target",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=exec",
        # "-": a hook that fails is logged, and the agent starts all the same.
        f"ExecStartPre=-{exec_line(spec.hook_argv('pre-start'))}",
        f"ExecStart={exec_line(spec.main_argv())}",
        f"ExecStopPost=-{exec_line(spec.hook_argv('post-stop'))}",
        f"WatchdogSec={spec.watchdog_s:g}s",
        "NotifyAccess=main",
        f'Environment="FLEET_SERVICE={service_name(spec.service)}"',
        f"Environment={WATCHED_BY_ENV}=systemd",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if spec.secrets:
        lines.append(f"EnvironmentFile={unit_value(str(spec.env_path))}")
    lines += [
        "Restart=always",
        "RestartSec=1s",
        "TimeoutStopSec=30s",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier={service_name(spec.service)}",
        "# The sandbox (the candidate units get the same): docs/install.md#the-sandbox",
        *(f"{key}={value}" for key, value in sandbox(spec.prefix, spec.state_dir)),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def render_env(spec: InstallSpec) -> str | None:
    """The env file's text (``NAME=value`` lines, values quoted), None when there is no secret."""
    if not spec.secrets:
        return None
    out = []
    for name, value in sorted(spec.secrets.items()):
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or "\n" in value:
            raise ConfigError(f"cannot write {name!r} to an environment file")
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
        out.append(f'{name}="{escaped}"')
    return "\n".join(out) + "\n"


def read_install_meta(unit_path: Path) -> dict[str, str]:
    """The parameters an earlier install wrote into its unit file (empty if none)."""
    try:
        text = unit_path.read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        if line.startswith(_META):
            try:
                data = json.loads(line[len(_META) :])
            except ValueError:
                return {}
            return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return {}
