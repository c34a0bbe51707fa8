"""``fleet agent install``'s files without systemd: secrets, their modes, and the sandbox.

The installer runs for real on a temporary tree (prefix, state dir, unit and env folders under
``tmp_path``) with a :class:`Systemd` that only records its calls. What is checked is what a
local user could see: the modes of what the install leaves, that the world-readable unit holds
no secret, and that every secret file is created 0600 rather than chmod-ed after its write.
The systemd tier checks the same on a real device, and that the sandbox is in effect.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.device.layout import AgentLayout
from harmony_fleet.adapters.systemd.install import Installer
from harmony_fleet.adapters.systemd.runner import SystemdRunner
from harmony_fleet.adapters.systemd.sandbox import sandbox, writable_paths
from harmony_fleet.adapters.systemd.systemctl import Result, Systemd
from harmony_fleet.adapters.systemd.unit_file import InstallSpec, render_unit
from harmony_fleet.contracts import UpgradeMarker, device_id
from harmony_fleet.contracts.ids import Version
from harmony_fleet.errors import ConfigError

CREDS = (
    "-----BEGIN NATS USER JWT-----\neyJ0eXAi.secret-jwt\n------END NATS USER JWT------\n"
    "-----BEGIN USER NKEY SEED-----\nSUAXSEED\n------END USER NKEY SEED------\n"
)
PASSWORD = 'pa$s"word'


@dataclass(frozen=True, kw_only=True)
class RecordingSystemd(Systemd):
    """Records every call; says the unit is enabled (after the first install's ``enable``)."""

    calls: list[list[str]] = field(default_factory=list)

    async def call(
        self, argv: object, *, check: bool = True, timeout_s: float | None = None
    ) -> Result:
        args = list(argv)  # type: ignore[call-overload]
        self.calls.append(args)
        return Result(tuple(args), 0, "enabled\n" if "is-enabled" in args else "", "")


#: Every ``open`` and ``chmod`` the process makes while :func:`recorded` is active.
_EVENTS: list[tuple[str, tuple[object, ...]]] = []
_RECORDING: list[bool] = []


def _hook(event: str, args: tuple[object, ...]) -> None:
    if _RECORDING and event in ("open", "os.chmod"):
        _EVENTS.append((event, args))


sys.addaudithook(_hook)


@pytest.fixture
def recorded() -> Iterator[list[tuple[str, tuple[object, ...]]]]:
    """Audit events of the test (Python's audit hooks: no os call is replaced), under umask 0
    so that a file created by a plain ``open`` would be 0666, not 0600."""
    _EVENTS.clear()
    old = os.umask(0)
    _RECORDING.append(True)
    try:
        yield _EVENTS
    finally:
        _RECORDING.clear()
        os.umask(old)


def make_spec(tmp_path: Path, **kw: object) -> InstallSpec:
    args: dict[str, object] = {
        "device_id": device_id("edge-1"),
        "prefix": tmp_path / "opt",
        "state_dir": tmp_path / "state",
        "service": "hf-agent",
        "nats_args": ("--nats", "tls://nats.example:4222"),
        "python": sys.executable,
        "unit_dir": tmp_path / "units",
        "env_dir": tmp_path / "etc",
        **kw,
    }
    return InstallSpec(**args)  # type: ignore[arg-type]


def given_files(tmp_path: Path) -> dict[str, Path]:
    """The creds and CA as a person hands them over: world-readable, in their own folder."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    creds, ca = home / "edge-1.creds", home / "edge-1-ca.pem"
    creds.write_text(CREDS)
    ca.write_text("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
    creds.chmod(0o644)
    return {"--nats-creds": creds, "--nats-tls-ca": ca}


def an_installed_version(spec: InstallSpec) -> Version:
    """``versions/1.0.0/agent``: a script that answers ``--version`` like an artifact."""
    home = AgentLayout(spec.prefix).version_dir("1.0.0")
    home.mkdir(parents=True)
    (home / "agent").write_text("print('fleet, version 1.0.0')\n")
    return Version("1.0.0")


async def install(spec: InstallSpec) -> list[str]:
    installer = Installer(spec, systemd=RecordingSystemd(), say=lambda _: None)
    return await installer.install(Version("1.0.0"), start=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def test_the_credentials_are_copied_to_a_private_place_and_the_unit_names_the_copies(
    tmp_path: Path,
) -> None:
    given = given_files(tmp_path)
    spec = make_spec(tmp_path, nats_files=given)
    an_installed_version(spec)
    changes = await install(spec)
    assert any("copied" in c for c in changes), changes
    folder = spec.credentials_dir
    assert folder == tmp_path / "etc" / "hf-agent"
    assert mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "nats.creds"]
    for flag, src in given.items():
        copy = spec.credential_path(flag)
        assert copy.read_bytes() == src.read_bytes()
        assert mode(copy) == 0o600 and copy.stat().st_uid == os.geteuid()
    unit = spec.unit_path.read_text()
    assert mode(spec.unit_path) == 0o644, "the unit is world-readable: it must hold no secret"
    assert str(spec.credential_path("--nats-creds")) in unit
    assert str(given["--nats-creds"]) not in unit, "the unit names the copy, not the original"
    assert "secret-jwt" not in unit and "SUAXSEED" not in unit
    assert not spec.env_path.exists(), "no password, no env file"

    assert await install(spec) == [], "a second identical install changes nothing"
    given["--nats-creds"].write_text(CREDS.replace("secret-jwt", "renewed-jwt"))
    changes = await install(spec)
    assert changes == [f"copied {given['--nats-creds']} to {folder / 'nats.creds'} (0600)"]
    assert "renewed-jwt" in (folder / "nats.creds").read_text()

    for src in given.values():
        src.unlink()  # the person deletes what they copied over: the agent keeps its copies
    assert all(spec.credential_path(flag).is_file() for flag in given)


async def test_a_copy_that_became_readable_by_others_is_written_again(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, nats_files=given_files(tmp_path))
    an_installed_version(spec)
    await install(spec)
    copy = spec.credential_path("--nats-creds")
    copy.chmod(0o644)
    spec.credentials_dir.chmod(0o755)
    assert await install(spec) != []
    assert mode(copy) == 0o600 and mode(spec.credentials_dir) == 0o700


async def test_copies_no_longer_asked_for_are_removed(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, nats_files=given_files(tmp_path))
    an_installed_version(spec)
    await install(spec)
    bare = make_spec(tmp_path)
    changes = await install(bare)
    assert f"removed {spec.credentials_dir}" in changes
    assert not spec.credentials_dir.exists()
    assert "--nats-creds" not in render_unit(bare)


async def test_secret_files_are_created_0600_never_chmod_ed_after_the_write(
    tmp_path: Path, recorded: list[tuple[str, tuple[object, ...]]]
) -> None:
    spec = make_spec(
        tmp_path, nats_files=given_files(tmp_path), secrets={"FLEET_NATS_PASSWORD": PASSWORD}
    )
    an_installed_version(spec)
    await install(spec)
    secrets = [spec.env_path, *spec.credentials_dir.iterdir()]
    for path in secrets:
        assert mode(path) == 0o600, path  # under umask 0: only an explicit 0600 gives this
    chmods = [str(args[0]) for event, args in recorded if event == "os.chmod"]
    folders = {str(spec.env_path.parent), str(spec.credentials_dir)}
    touched = [p for p in chmods if os.path.dirname(p) in folders]
    assert touched == [], f"a secret was chmod-ed after its write: {touched}"
    created = [
        args for event, args in recorded
        if event == "open" and os.path.dirname(str(args[0])) in folders
        and isinstance(args[2], int) and args[2] & os.O_CREAT
    ]  # fmt: skip
    assert created and all(args[2] & os.O_EXCL for args in created), created
    assert spec.env_path.read_text() == 'FLEET_NATS_PASSWORD="pa\\$s\\"word"\n'
    unit = spec.unit_path.read_text()
    assert "pa$s" not in unit and "://" + "edge" not in unit


async def test_uninstall_removes_the_copies_too(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, nats_files=given_files(tmp_path), secrets={"FLEET_NATS_PASSWORD": PASSWORD}
    )
    an_installed_version(spec)
    await install(spec)
    installer = Installer(spec, systemd=RecordingSystemd(), say=lambda _: None)
    changes = await installer.uninstall(purge=False)
    assert f"removed {spec.credentials_dir}" in changes
    assert not spec.credentials_dir.exists() and not spec.env_path.exists()


# -- the sandbox ---------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, str]:
    section = text.split("[Service]", 1)[1].split("[Install]", 1)[0]
    return dict(
        line.split("=", 1) for line in section.splitlines() if "=" in line and line[0] != "#"
    )


def test_the_unit_carries_the_whole_sandbox(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, prefix=tmp_path / "opt hf")
    settings = unit_settings(render_unit(spec))
    expected = dict(sandbox(spec.prefix, spec.state_dir))
    assert {k: settings.get(k) for k in expected} == expected
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == f'"{tmp_path}/opt hf" "{tmp_path}/state"'
    assert settings["CapabilityBoundingSet"] == "", "no capability at all"
    assert {"PrivateTmp", "ProtectHome", "RestrictSUIDSGID", "SystemCallFilter"} <= set(settings)


async def test_a_candidate_unit_gets_the_same_sandbox_as_the_main(tmp_path: Path) -> None:
    sd = RecordingSystemd()
    layout = AgentLayout(tmp_path / "prefix")
    home = layout.version_dir("2.0.0")
    home.mkdir(parents=True)
    (home / "agent").write_bytes(b"x")
    launch = LaunchSpec(python="/usr/bin/python3", device_id="edge-1", state_dir=tmp_path / "s")
    runner = SystemdRunner(layout, launch, service="hf", systemd=sd, environ={})
    marker = UpgradeMarker(
        upgrade_id="u1",
        device_id="edge-1",
        target_version="2.0.0",
        artifact_url="http://127.0.0.1:9/a",
        sha256="ab" * 32,
        requested_at=0.0,
    )
    await runner.start_candidate(marker)
    run = next(c for c in sd.calls if c[0] == "systemd-run")
    options = run[: run.index("--")]
    for key, value in sandbox(layout.prefix, launch.state_dir):
        assert f"--property={key}={value}" in options, key
    spec = make_spec(tmp_path, prefix=layout.prefix, state_dir=launch.state_dir)
    main = unit_settings(render_unit(spec))
    candidate = dict(o.removeprefix("--property=").split("=", 1) for o in options[3:])
    assert {k: candidate[k] for k, _ in sandbox(spec.prefix, spec.state_dir)} == {
        k: main[k] for k, _ in sandbox(spec.prefix, spec.state_dir)
    }


@pytest.mark.parametrize("bad", ['/opt/a"b', "/opt/a\\b", "/opt/%n", "relative"])
def test_a_writable_path_that_cannot_be_written_the_same_way_twice_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="writable path"):
        writable_paths(Path(bad), Path("/var/lib/x"))
