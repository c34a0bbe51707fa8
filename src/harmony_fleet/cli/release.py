"""``fleet release``: the signed release repository (TUF; docs/releases.md).

``init`` makes a repository folder (metadata + key files) offline; ``publish`` signs an artifact
as a version and uploads the artifact to the ``fleet_artifacts`` object store and the metadata
to the ``fleet_tuf`` bucket over the admin's NATS context; ``list`` shows what is published and
verifies it; ``rotate-key`` replaces a role's keys; ``refresh`` re-signs timestamp and snapshot
before they expire. Every command that changes the repository first adopts what is published
and newer (the operator's refreshes), then publishes what it changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import bad_flag, build_nats_options, nats_options, print_json
from harmony_fleet.contracts import version as check_version
from harmony_fleet.contracts.rollout import skip_entry
from harmony_fleet.errors import ConfigError, FleetError, NotFound

if TYPE_CHECKING:
    from harmony_fleet.adapters.tuf.repository import Repository

log = logging.getLogger(__name__)

# python-tuf (and cryptography) are imported by each command when it runs, never when the CLI
# is loaded: the agent's artifact loads this module with every other command.

T = TypeVar("T")


def default_repo() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "harmony-fleet" / "release"


def repo_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--repo",
        type=click.Path(path_type=Path, file_okay=False),
        default=default_repo,
        envvar="FLEET_RELEASE_REPO",
        show_envvar=True,
        help="The repository folder (metadata/ and keys/). [default: "
        "$XDG_CONFIG_HOME/harmony-fleet/release]",
    )(func)


def keys_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--keys",
        "key_files",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="A key file to sign with, besides those in the repository's keys/ (repeat).",
    )(func)


def _open(repo: Path, key_files: tuple[Path, ...]) -> Repository:
    from harmony_fleet.adapters.tuf.keys import KeyRing, key_folder_files  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.repository import Repository  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.store import DirStore  # noqa: PLC0415

    if not (repo / "metadata" / "1.root.json").exists():
        raise NotFound(f"no release repository in {repo} (run `fleet release init --repo DIR`)")
    keys = KeyRing.load([*key_folder_files(repo / "keys"), *key_files])
    return Repository(DirStore(repo / "metadata"), keys)


def _connected(
    nats_kwargs: dict[str, Any], work: Callable[[NatsClient], Coroutine[Any, Any, T]]
) -> T:
    options = build_nats_options(**nats_kwargs)

    async def go() -> T:
        nc = await connect(options.with_name("fleet-release"))
        try:
            return await work(nc)
        finally:
            await nc.close()

    return asyncio.run(go())


async def _sync_then(nc: NatsClient, repo: Repository, change: Callable[[], T]) -> T:
    """Adopt what is published and newer, make ``change``, publish the current metadata."""
    from harmony_fleet.adapters.tuf.published import (  # noqa: PLC0415
        adopt_newer,
        current_names,
        load_published,
        push_metadata,
    )
    from harmony_fleet.adapters.tuf.store import DirStore  # noqa: PLC0415

    assert isinstance(repo.store, DirStore)
    adopt_newer(repo.store, await load_published(nc))
    result = change()
    await push_metadata(nc, repo.store, current_names(repo.store))
    return result


@click.group("release")
def release_group() -> None:
    """The signed release repository (TUF): create, publish, list, rotate keys, refresh."""


def _role_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for role in ("timestamp", "snapshot", "targets", "root"):
        func = click.option(
            f"--{role}-threshold",
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help=f"Signatures {role} metadata needs.",
        )(func)
        func = click.option(
            f"--{role}-keys",
            type=click.IntRange(1),
            default=None,
            help=f"Keys of the {role} role. [default: its threshold]",
        )(func)
    return func


@release_group.command("init")
@repo_option
@_role_options
def init_cmd(repo: Path, **counts: int | None) -> None:
    """Create a repository in --repo: new keys (Ed25519) and version 1 of every role."""
    from harmony_fleet.adapters.tuf.keys import write_key_folder  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.repository import Repository, RoleSpec  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.store import DirStore  # noqa: PLC0415

    specs = {}
    for role in ("root", "targets", "snapshot", "timestamp"):
        threshold = counts[f"{role}_threshold"] or 1
        keys = counts[f"{role}_keys"] or threshold
        if keys < threshold:
            raise bad_flag(f"--{role}-keys", f"{keys} keys cannot meet a threshold of {threshold}")
        specs[role] = RoleSpec(keys=keys, threshold=threshold)
    created = Repository.create(DirStore(repo / "metadata"), specs)
    files = write_key_folder(repo / "keys", created.keys)
    click.echo(f"release repository created in {repo}")
    click.echo(
        f"trust root for `fleet agent install --trust-root`: {repo / 'metadata/1.root.json'}"
    )
    for path in files:
        click.echo(f"key file (0600, keep it private): {path}")
    click.echo("move root.keys.json offline; give online.keys.json to the operator for refreshes")


@release_group.command("publish")
@click.argument("artifact", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--version", "ver", required=True, help="Agent version this artifact is.")
@click.option("--min-version", default="", help="Lowest version that may upgrade to it.")
@click.option("--channel", default="stable", show_default=True, help="Release channel.")
@click.option("--replace", is_flag=True, help="Sign other bytes for a version already signed.")
@click.option(
    "--skip",
    "skip",
    multiple=True,
    metavar="DEVICE|LABEL=VALUE",
    help="Devices rollouts of this version leave alone (repeat; signed with the release; "
    "publishing the same bytes again with another list updates it).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: outcome and target.")
@repo_option
@keys_option
@nats_options
def publish_cmd(
    artifact: Path,
    ver: str,
    min_version: str,
    channel: str,
    replace: bool,
    skip: tuple[str, ...],
    as_json: bool,
    repo: Path,
    key_files: tuple[Path, ...],
    **nats_kwargs: Any,
) -> None:
    """Sign ARTIFACT as agent --version and publish it (artifact, then metadata)."""
    from harmony_fleet.adapters.tuf.published import (  # noqa: PLC0415
        adopt_newer,
        current_names,
        load_published,
        push_metadata,
        put_artifact,
    )
    from harmony_fleet.adapters.tuf.repository import target_path  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.store import DirStore  # noqa: PLC0415

    try:
        check_version(ver)
        if min_version:
            check_version(min_version)
    except FleetError as exc:
        raise bad_flag("--version", str(exc)) from exc
    try:
        skip = tuple(skip_entry(e) for e in skip)
    except FleetError as exc:
        raise bad_flag("--skip", str(exc)) from exc
    repository = _open(repo, key_files)
    size = artifact.stat().st_size

    async def work(nc: NatsClient) -> tuple[str, Any]:
        assert isinstance(repository.store, DirStore)
        adopt_newer(repository.store, await load_published(nc))
        release, outcome = repository.add_target(
            artifact,
            version=ver,
            min_version=min_version,
            channel=channel,
            replace=replace,
            skip=skip,
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
            disable=as_json or size < 4 * 1024 * 1024,
        ) as bar:
            task = bar.add_task(f"uploading {target_path(ver)}", total=size)
            await put_artifact(
                nc, artifact, release.object_name, progress=lambda n: bar.advance(task, n)
            )
        await push_metadata(nc, repository.store, current_names(repository.store))
        return outcome, release

    outcome, release = _connected(nats_kwargs, work)
    if as_json:
        print_json({"outcome": outcome, "target": dataclasses.asdict(release)})
    else:
        click.echo(f"release {ver}: {outcome} ({release.path}, sha256 {release.sha256[:12]}…)")


@release_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of targets.")
@nats_options
def list_cmd(as_json: bool, **nats_kwargs: Any) -> None:
    """Show every published target (verified against the published root)."""
    from harmony_fleet.adapters.tuf.keys import KeyRing  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.published import load_published  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.repository import Repository  # noqa: PLC0415

    async def work(nc: NatsClient) -> list[Any]:
        published = Repository(await load_published(nc), KeyRing())
        try:
            published.verify()
        except NotFound:
            return []
        return published.releases()

    rows = _connected(nats_kwargs, work)
    if as_json:
        print_json([dataclasses.asdict(r) for r in rows])
        return
    if not rows:
        click.echo("no releases published yet")
        raise SystemExit(exit_codes.OK)
    table = Table(box=None, header_style="bold")
    for col in ("VERSION", "MIN VERSION", "CHANNEL", "SIZE", "SHA256", "TARGET", "SKIP"):
        table.add_column(col)
    for r in rows:
        skip = ", ".join(r.skip[:3]) + (f" (+{len(r.skip) - 3})" if len(r.skip) > 3 else "")
        table.add_row(
            r.version, r.min_version, r.channel, str(r.length), r.sha256[:12], r.path, skip
        )
    Console().print(table)


@release_group.command("rotate-key")
@click.argument("role", type=click.Choice(["root", "targets", "snapshot", "timestamp"]))
@click.option("--count", type=click.IntRange(1), default=None, help="New number of keys.")
@click.option("--threshold", type=click.IntRange(1), default=None, help="New threshold.")
@repo_option
@keys_option
@nats_options
def rotate_cmd(
    role: str,
    count: int | None,
    threshold: int | None,
    repo: Path,
    key_files: tuple[Path, ...],
    **nats_kwargs: Any,
) -> None:
    """Replace ROLE's keys (a new root version) and re-sign what ROLE signs; publish."""
    from harmony_fleet.adapters.tuf.keys import write_key_folder  # noqa: PLC0415

    repository = _open(repo, key_files)

    def change() -> int:
        root = repository.rotate(role, keys=count, threshold=threshold)
        write_key_folder(repo / "keys", repository.keys, [role])
        return int(root.version)

    version = _connected(nats_kwargs, lambda nc: _sync_then(nc, repository, change))
    click.echo(f"{role} keys rotated: root version {version} published; the old keys are void")


@release_group.command("refresh")
@click.option("--force", is_flag=True, help="Re-sign even what is not due yet.")
@repo_option
@keys_option
@nats_options
def refresh_cmd(force: bool, repo: Path, key_files: tuple[Path, ...], **nats_kwargs: Any) -> None:
    """Re-sign timestamp and snapshot (and targets, with its keys) before they expire."""
    from harmony_fleet.adapters.tuf.keys import KeyRing  # noqa: PLC0415
    from harmony_fleet.adapters.tuf.published import refresh_published  # noqa: PLC0415

    if not (repo / "metadata" / "1.root.json").exists() and not key_files:
        raise ConfigError(f"no repository in {repo}: give --repo, or --keys online.keys.json")
    if (repo / "metadata" / "1.root.json").exists():
        repository = _open(repo, key_files)
        done = _connected(
            nats_kwargs,
            lambda nc: _sync_then(nc, repository, lambda: repository.refresh(force=force)),
        )
    else:  # only the online keys: work on what is published (as the operator's timer does)
        keys = KeyRing.load(key_files)
        done = _connected(nats_kwargs, lambda nc: refresh_published(nc, keys, force=force))
    click.echo(f"re-signed: {', '.join(done)}" if done else "nothing was due")


def register(group: click.Group) -> None:
    group.add_command(release_group)
