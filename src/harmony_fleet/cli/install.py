"""``fleet agent install`` and ``fleet agent uninstall``: the agent as a systemd service.

Thin: the work is in :mod:`harmony_fleet.adapters.systemd.install`. Errors are
:mod:`harmony_fleet.errors` types, which the ``fleet`` group turns into one line and an exit code
(not root: 4 refused; no systemd: 69 unavailable; a bad flag or artifact: 2).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from harmony_fleet.adapters.nats.flags import nats_argv
from harmony_fleet.adapters.systemd.install import Installer, require_root_and_systemd
from harmony_fleet.adapters.systemd.unit_file import (
    DEFAULT_PREFIX,
    InstallSpec,
    read_install_meta,
)
from harmony_fleet.adapters.systemd.units import DEFAULT_SERVICE, service_name
from harmony_fleet.adapters.tuf.pin import pin_root
from harmony_fleet.cli._common import build_nats_options, keep_versions_option, nats_options
from harmony_fleet.cli.agent import agent_group
from harmony_fleet.cli.artifact_flags import (
    artifact_access,
    artifact_argv,
    artifact_options,
    check_url_flag,
)
from harmony_fleet.contracts import device_id

_SERVICE = click.option(
    "--service",
    default=DEFAULT_SERVICE,
    show_default=True,
    help="Name of the systemd service (its candidates are <service>-candidate-<upgrade>).",
)


_FILE_FLAGS = {
    "nats_creds": "--nats-creds",
    "nats_tls_ca": "--nats-tls-ca",
    "nats_tls_cert": "--nats-tls-cert",
    "nats_tls_key": "--nats-tls-key",
}


def _unit_nats(nats_kwargs: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Path]]:
    """The NATS flags for the unit's command line without the files (``nats_argv``: the
    password stays out of it), and the files by flag, as absolute paths: the install copies
    them into a root-only place of its own and the unit names the copies."""
    kwargs = dict(nats_kwargs)
    files: dict[str, Path] = {}
    for key, flag in _FILE_FLAGS.items():
        if kwargs.get(key):
            files[flag] = Path(kwargs[key]).resolve()
        kwargs[key] = None
    return nats_argv(**kwargs), files


@click.command("install")
@click.option("--device-id", "device", required=True, envvar="FLEET_DEVICE_ID", show_envvar=True)
@click.option(
    "--artifact",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The agent artifact (.pyz) to install.",
)
@click.option("--artifact-url", metavar="URL", help="Download the artifact from here instead.")
@click.option("--sha256", metavar="HEX", help="Expected SHA-256 (required with --artifact-url).")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_PREFIX,
    show_default=True,
    help="Where versions/ and current live.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The agent's state. [default: /var/lib/harmony-fleet/DEVICE]",
)
@_SERVICE
@click.option("--heartbeat-interval", type=float, default=5.0, show_default=True)
@keep_versions_option()
@click.option(
    "--python",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Interpreter that runs the artifact. [default: the base Python running this command]",
)
@click.option("--no-start", is_flag=True, help="Install and enable, but do not start now.")
@artifact_options
@click.option(
    "--trust-root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The release manager's root.json, pinned in the state dir: upgrades are verified "
    "against the signed releases it roots. Without it the agent refuses to download upgrades.",
)
@nats_options
def install_cmd(
    device: str,
    artifact: Path | None,
    artifact_url: str | None,
    sha256: str | None,
    prefix: Path,
    state_dir: Path | None,
    service: str,
    heartbeat_interval: float,
    keep_versions: int,
    python: Path | None,
    no_start: bool,
    allow_http_artifacts: bool,
    artifact_ca: Path | None,
    trust_root: Path | None,
    **nats_kwargs: Any,
) -> None:
    """Install the agent as a systemd service from one artifact (idempotent).

    The NATS credential files (--nats-creds, --nats-tls-ca, a client key) are copied into
    /etc/harmony-fleet/SERVICE/ (root only) and the unit names the copies.
    """
    if (artifact is None) == (artifact_url is None):
        raise click.UsageError("give exactly one of --artifact PATH or --artifact-url URL")
    if artifact_url is not None and sha256 is None:
        raise click.UsageError("--artifact-url needs --sha256")
    if artifact_url is not None:
        check_url_flag("--artifact-url", artifact_url, allow_http_artifacts)
    access = artifact_access(allow_http_artifacts, artifact_ca)
    if not 0.1 <= heartbeat_interval <= 3600:
        raise click.BadParameter("between 0.1 and 3600 seconds", param_hint="--heartbeat-interval")
    dev = device_id(device)
    nats = build_nats_options(**nats_kwargs)
    unit_nats, nats_files = _unit_nats(nats_kwargs)
    extra: dict[str, Any] = {"python": str(python.absolute())} if python else {}
    spec = InstallSpec(
        device_id=dev,
        prefix=prefix.absolute(),
        state_dir=(state_dir or Path("/var/lib/harmony-fleet") / dev).absolute(),
        service=service_name(service),
        nats_args=unit_nats,
        nats_files=nats_files,
        secrets={"FLEET_NATS_PASSWORD": nats.password} if nats.password else {},
        heartbeat_interval_s=heartbeat_interval,
        keep_versions=keep_versions,
        agent_args=artifact_argv(allow_http_artifacts, artifact_ca),
        **extra,
    )
    require_root_and_systemd()
    if trust_root is not None:
        click.echo(f"  trust root pinned: {pin_root(spec.state_dir, trust_root)}")
    installer = Installer(spec, say=lambda line: click.echo(f"  {line}"))
    click.echo(f"installing {spec.unit_name} for device {dev} in {spec.prefix}")

    async def go() -> list[str]:
        v = await installer.obtain(path=artifact, url=artifact_url, sha256=sha256, access=access)
        changes = await installer.install(v, start=not no_start)
        click.echo(f"version {v}, {spec.unit_name} " + ("started" if not no_start else "enabled"))
        return changes

    changes = asyncio.run(go())
    if not changes:
        click.echo("nothing to change: already installed exactly like this")


@click.command("uninstall")
@_SERVICE
@click.option(
    "--purge", is_flag=True, help="Also delete the prefix (every version) and the state dir."
)
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    help="Prefix to purge. [default: the one the unit was installed with]",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="State dir to purge. [default: the one the unit was installed with]",
)
def uninstall_cmd(service: str, purge: bool, prefix: Path | None, state_dir: Path | None) -> None:
    """Stop and remove the service and any candidate units (idempotent)."""
    name = service_name(service)
    require_root_and_systemd()
    probe = InstallSpec(device_id=device_id("x"), state_dir=Path("/nonexistent"), service=name)
    meta = read_install_meta(probe.unit_path)
    # Without a unit file (never installed, or uninstalled already) only what is named on the
    # command line, or the default prefix, is purged: the state dir is not known then.
    spec = InstallSpec(
        device_id=device_id(meta.get("device_id", "x")),
        prefix=(prefix or Path(meta.get("prefix", str(DEFAULT_PREFIX)))).absolute(),
        state_dir=(state_dir or Path(meta.get("state_dir", "/nonexistent"))).absolute(),
        service=name,
    )
    installer = Installer(spec, say=lambda line: click.echo(f"  {line}"))
    click.echo(f"uninstalling {spec.unit_name}")
    changes = asyncio.run(installer.uninstall(purge=purge))
    if not changes:
        click.echo("nothing to change: not installed")


def register(group: click.Group) -> None:
    """Add ``install`` and ``uninstall`` to the existing ``fleet agent`` group.

    ``group`` is the root ``fleet`` group (the same signature as every command module); the
    commands go to ``agent_group``, which ``cli.agent`` registers there.
    """
    del group
    agent_group.add_command(install_cmd)
    agent_group.add_command(uninstall_cmd)
