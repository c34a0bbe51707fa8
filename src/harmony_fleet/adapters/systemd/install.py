"""``fleet agent install`` / ``uninstall``: the agent as a systemd service, from one artifact.

What an install leaves on the device (a clean install)::

    <prefix>/versions/<v>/agent              the artifact (and, beside it, its extraction)
    <prefix>/current -> versions/<v>          what the service runs
    <prefix>/launcher/agent                   a copy of the installed artifact: the unit's hooks
    <state_dir>/                              the agent's state (upgrade record, skip list)
    /etc/systemd/system/<service>.service     Restart=always, logs in the journal
    /etc/harmony-fleet/<service>.env          0600, only when there is a secret (NATS password)
    /etc/harmony-fleet/<service>/             0700: the install's own copies of the NATS
                                              credential files (nats.creds, ca.pem, ...), 0600

The unit itself is :mod:`.unit_file`'s (a pure function of :class:`InstallSpec`): after an
upgrade commits and the old agent exits, ``Restart=always`` starts the new version, and the
unit's hooks keep the post-commit watch. The launcher is a copy made by the install and never
touched by an upgrade, so the judge of a new version is never that version's code; installing a
newer artifact by hand updates it.

Every step compares before it writes, so a second identical install changes nothing and says so.
Secret files (the env file, the credential copies) are written by
:func:`~harmony_fleet.adapters.nats.files.write_secret`: 0600 from their first byte
(``O_CREAT|O_EXCL`` on a temporary name, then renamed), never chmod-ed after the write; the
unit names the copies, so the files the person gave can be deleted after the install.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from harmony_fleet.adapters.device.fs import fsync_dir, sha256_of, write_atomic
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.http import HTTPS_ONLY, ArtifactAccess, download
from harmony_fleet.adapters.nats.files import write_secret
from harmony_fleet.adapters.process.bounded import run_bounded
from harmony_fleet.adapters.systemd.systemctl import Systemd, SystemdUnavailable
from harmony_fleet.adapters.systemd.unit_file import (
    LAUNCHER_DIR,
    InstallSpec,
    render_env,
    render_unit,
)
from harmony_fleet.adapters.systemd.units import candidate_pattern
from harmony_fleet.contracts.ids import Version, sha256_hex, version
from harmony_fleet.errors import ConfigError, IntegrityError, Refused

log = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"version\s+(\S+)\s*$")
#: A start, restart, stop or disable waits for the unit's job: longer than its TimeoutStopSec.
_JOB_S = 120.0


def require_root_and_systemd(*, euid: int | None = None, systemd: Systemd | None = None) -> None:
    """One clear line instead of a permission error half-way through."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise Refused("fleet agent install/uninstall must run as root", code="not_root")
    if not (systemd or Systemd()).booted():
        raise SystemdUnavailable(
            "systemd is not running on this machine (/run/systemd/system is absent)"
        )


Say = Callable[[str], None]


class Installer:
    """Applies an :class:`InstallSpec`; every method reports what it changed through ``say``."""

    def __init__(self, spec: InstallSpec, *, systemd: Systemd | None = None, say: Say) -> None:
        self.spec = spec
        self.systemd = systemd or Systemd()
        self.say = say
        self.layout = AgentLayout(spec.prefix)
        self.changes: list[str] = []

    def _changed(self, what: str) -> None:
        self.changes.append(what)
        self.say(what)

    # -- artifact -------------------------------------------------------------------------------

    def installed_version_with(self, sha256: str) -> Version | None:
        """A version already installed whose artifact has exactly these bytes."""
        for v in self.layout.list_versions():
            path = self.layout.version_dir(v) / self.layout.artifact_name
            if path.is_file() and sha256_of(path) == sha256:
                return v
        return None

    async def obtain(
        self,
        *,
        path: Path | None = None,
        url: str | None = None,
        sha256: str | None = None,
        access: ArtifactAccess = HTTPS_ONLY,
    ) -> Version:
        """The version of the given artifact, installing it under ``versions/`` if it is new.

        A file (``path``) or a download (``url`` with ``sha256``, through the verified,
        resumable HTTP adapter). Bytes already installed as some version are recognised by their
        SHA-256 and neither copied nor downloaded again. ``access``: where a download may come
        from (``--allow-http-artifacts``, ``--artifact-ca``).
        """
        if sha256 is not None:
            sha256 = sha256_hex(sha256)
        if path is not None:
            actual = await asyncio.to_thread(sha256_of, path)
            if sha256 is not None and actual != sha256:
                raise IntegrityError(f"artifact {path}", sha256, actual)
            sha256 = actual
        if sha256 is None:
            raise ConfigError("an artifact needs --artifact PATH, or --artifact-url with --sha256")
        known = await asyncio.to_thread(self.installed_version_with, sha256)
        if known is not None:
            self.say(f"version {known} is already installed with these bytes")
            return known
        dest = self.incoming()
        await asyncio.to_thread(_fresh_dir, dest.parent)
        if path is not None:
            await asyncio.to_thread(_copy_durably, path, dest)
        elif url is not None:
            await download(url, dest, sha256, access=access)
        else:
            raise ConfigError("an artifact needs --artifact PATH or --artifact-url URL")
        await asyncio.to_thread(_keep_only, dest)
        return await self.adopt(dest)

    def incoming(self) -> Path:
        """Where a new artifact is put before its version is known (inside ``versions/``, so
        the final rename is atomic and the extraction made by ``--version`` is kept)."""
        return self.layout.versions_dir / ".install" / self.layout.artifact_name

    async def adopt(self, artifact: Path) -> Version:
        """Ask the artifact in :meth:`incoming` its version and move it to ``versions/<v>/``."""
        result = await run_bounded([self.spec.python, str(artifact), "--version"], 120.0)
        match = _VERSION_RE.search(result.log_tail[-1]) if result.log_tail else None
        if not result.ok or match is None:
            shutil.rmtree(artifact.parent, ignore_errors=True)
            detail = " | ".join(result.log_tail[-3:]) or f"exit code {result.exit_code}"
            raise ConfigError(f"the artifact does not run with {self.spec.python}: {detail}")
        v = version(match.group(1))
        home = self.layout.version_dir(v)
        if home.exists():
            shutil.rmtree(artifact.parent, ignore_errors=True)
            raise Refused(
                f"{home} exists with a different artifact; remove that version first",
                code="version_exists",
            )
        os.rename(artifact.parent, home)
        fsync_dir(self.layout.versions_dir)
        self._changed(f"installed version {v} in {home}")
        return v

    # -- the rest of the install ----------------------------------------------------------------

    async def install(self, v: Version, *, start: bool) -> list[str]:
        """Point ``current`` at ``v``, write state dir, env file and unit, enable and start."""
        spec = self.spec
        running_before = await self.systemd.is_active(spec.unit_name) == "active"
        moved = self._point_current(v)
        launcher_changed = self._pin_launcher(v)
        if launcher_changed:
            # Extract it now (once), not in the first hook: a hook runs on every restart.
            await run_bounded([spec.python, str(spec.launcher_path), "--version"], 120.0)
        if not spec.state_dir.is_dir():
            spec.state_dir.mkdir(parents=True, mode=0o700)
            self._changed(f"created {spec.state_dir}")
        creds_changed = await asyncio.to_thread(self._install_credentials)
        env_changed = self._write_if_changed(spec.env_path, render_env(spec), mode=0o600)
        unit_changed = self._write_if_changed(spec.unit_path, render_unit(spec), mode=0o644)
        env_changed = env_changed or creds_changed
        if unit_changed or env_changed:
            await self.systemd.daemon_reload()
        enabled = await self.systemd.systemctl("is-enabled", "--", spec.unit_name, check=False)
        if enabled.stdout.strip() != "enabled":
            await self.systemd.systemctl("enable", "--", spec.unit_name)
            self._changed(f"enabled {spec.unit_name}")
        if start and not running_before:
            await self.systemd.systemctl("start", "--", spec.unit_name, timeout_s=_JOB_S)
            self._changed(f"started {spec.unit_name}")
        elif start and (moved or unit_changed or env_changed or launcher_changed):
            await self.systemd.systemctl("restart", "--", spec.unit_name, timeout_s=_JOB_S)
            self._changed(f"restarted {spec.unit_name}")
        return self.changes

    def _point_current(self, v: Version) -> bool:
        now = self.layout.current_version() if self.layout.current_link.is_symlink() else None
        if now == v:
            return False
        self.layout.swap_current(v)
        self._changed(f"current -> versions/{v}" + (f" (was {now})" if now else ""))
        return True

    def _pin_launcher(self, v: Version) -> bool:
        """Copy ``v``'s artifact to ``launcher/agent`` unless those bytes are there already."""
        source = self.layout.version_dir(v) / self.layout.artifact_name
        dest = self.spec.launcher_path
        if dest.is_file() and sha256_of(dest) == sha256_of(source):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged = dest.with_name(f".{dest.name}.new")
        _copy_durably(source, staged)
        os.chmod(staged, 0o755)  # noqa: S103 - an executable artifact, like /usr/bin
        os.replace(staged, dest)
        fsync_dir(dest.parent)
        self._changed(f"launcher (post-commit watch hooks) -> version {v}: {dest}")
        return True

    def _install_credentials(self) -> bool:
        """Copy the NATS credential files into :attr:`InstallSpec.credentials_dir` (0700, files
        0600 from their first byte); drop copies no longer asked for. Whether anything changed.
        """
        spec = self.spec
        folder = spec.credentials_dir
        wanted = {spec.credential_path(flag): src for flag, src in spec.nats_files.items()}
        changed = False
        if wanted:
            _private_dir(folder)
        for dest, src in wanted.items():
            try:
                data = src.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {src}: {exc.strerror or exc}") from exc
            if _same_secret(dest, data):
                continue
            write_secret(dest, data)
            changed = True
            self._changed(f"copied {src} to {dest} (0600)")
        if folder.is_dir():
            for leftover in sorted(folder.iterdir()):
                if leftover not in wanted and not leftover.is_dir():
                    leftover.unlink()
                    changed = True
                    self._changed(f"removed {leftover}")
            if not wanted:
                folder.rmdir()
                self._changed(f"removed {folder}")
        return changed

    def _write_if_changed(self, path: Path, text: str | None, *, mode: int) -> bool:
        """``path`` holds ``text`` (None: no file); a 0600 file is a secret (write_secret)."""
        if text is None:
            if path.exists():
                path.unlink()
                self._changed(f"removed {path}")
                return True
            return False
        data = text.encode()
        if mode == 0o600:
            if _same_secret(path, data):
                return False
            write_secret(path, data)
        else:
            try:
                if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
                    return False
            except FileNotFoundError:
                pass
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, mode=mode)
        self._changed(f"wrote {path}")
        return True

    # -- uninstall ------------------------------------------------------------------------------

    async def uninstall(self, *, purge: bool) -> list[str]:
        """Stop and remove the service and every candidate unit; ``purge`` the files too."""
        spec, sd = self.spec, self.systemd
        for unit in await sd.list_units(candidate_pattern(spec.service)):
            await sd.stop(unit, timeout_s=_JOB_S)
            await sd.reset_failed(unit)
            self._changed(f"stopped {unit}")
        if spec.unit_path.exists() or await sd.is_active(spec.unit_name) != "inactive":
            await sd.systemctl(
                "disable", "--now", "--", spec.unit_name, check=False, timeout_s=_JOB_S
            )
            await sd.reset_failed(spec.unit_name)
            self._changed(f"stopped and disabled {spec.unit_name}")
        removed = False
        for path in (spec.unit_path, spec.env_path):
            if path.exists():
                path.unlink()
                removed = True
                self._changed(f"removed {path}")
        if spec.credentials_dir.is_dir():
            shutil.rmtree(spec.credentials_dir)
            self._changed(f"removed {spec.credentials_dir}")
        if removed:
            await sd.daemon_reload()
        if purge:
            for folder, is_prefix in ((spec.prefix, True), (spec.state_dir, False)):
                if folder.exists():
                    _check_purgeable(folder, is_prefix=is_prefix)
                    shutil.rmtree(folder)
                    self._changed(f"removed {folder}")
        return self.changes


#: Folders a purge never deletes, whatever the flags say.
# fmt: off
_SYSTEM_DIRS = frozenset(Path(p) for p in (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/usr", "/usr/local", "/var", "/var/lib", "/var/cache", "/var/log",
    "/etc/systemd", "/etc/systemd/system",
))
# fmt: on


def _check_purgeable(folder: Path, *, is_prefix: bool) -> None:
    """Refuse to delete a folder that cannot be ours (``/var/lib``, a mistyped prefix)."""
    resolved = folder.resolve()
    if resolved in _SYSTEM_DIRS or len(resolved.parts) < 3:
        raise Refused(f"refusing to delete {resolved}: a system folder", code="unsafe_purge")
    if is_prefix:
        names = {p.name for p in resolved.iterdir() if not p.name.startswith(".")}
        if names - {"versions", "current", "agent", LAUNCHER_DIR}:
            raise Refused(
                f"refusing to delete {resolved}: it holds more than versions/ and current",
                code="unsafe_purge",
            )


def _private_dir(folder: Path) -> None:
    """``folder`` exists, is a real directory owned by us and is 0700."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise Refused(f"{folder} is not a directory of ours: remove it first", code="unsafe_dir")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)


def _same_secret(path: Path, data: bytes) -> bool:
    """``path`` is a regular file of ours, 0600, holding exactly ``data``."""
    try:
        info = path.lstat()
        return (
            stat.S_ISREG(info.st_mode)
            and stat.S_IMODE(info.st_mode) == 0o600
            and info.st_uid == os.geteuid()
            and path.read_bytes() == data
        )
    except FileNotFoundError:
        return False


def _fresh_dir(path: Path) -> None:
    """An empty folder at ``path`` (a leftover of an interrupted install is dropped)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _copy_durably(src: Path, dest: Path) -> None:
    try:
        shutil.copyfile(src, dest)
        with open(dest, "rb+") as f:
            os.fsync(f.fileno())
    except OSError as exc:
        raise ConfigError(f"cannot copy the artifact {src}: {exc.strerror or exc}") from exc


def _keep_only(dest: Path) -> None:
    """Make ``dest`` executable and drop the downloader's lock and sidecar files beside it."""
    os.chmod(dest, 0o755)  # noqa: S103 - an executable artifact, like /usr/bin
    for leftover in dest.parent.iterdir():
        if leftover != dest:
            leftover.unlink()
