"""``fleet release catalogue``: the unsigned version -> URL catalogue in NATS KV (hidden).

Only the Kubernetes mode of the operator still reads it, to turn ``Device.spec.agentVersion``
into an artifact URL and SHA-256, until it resolves versions through the signed repository
(``fleet release``, docs/releases.md) like the devices do. Nothing else may trust it: a device
verifies what it installs against the signed metadata, never against this catalogue.
Publishing is idempotent (the same artifact again is a no-op) and a version is immutable
unless ``--replace`` says otherwise, because "2.0.0" must mean the same bytes on every device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Undecodable
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import bad_flag, build_nats_options, nats_options, print_json
from harmony_fleet.cli.request import who
from harmony_fleet.contracts import (
    Release,
    release_key,
    sha256_hex,
    version,
)
from harmony_fleet.errors import Conflict, NotFound, Refused

log = logging.getLogger(__name__)


async def publish(nc: NatsClient, release: Release, *, replace: bool = False) -> str:
    """Write ``release`` into the catalogue; return ``created``, ``unchanged`` or ``replaced``.

    Raises :class:`Refused` when the version exists with another artifact and not ``replace``.
    """
    kv = await FleetKV(nc).releases()
    key = release_key(release.version)
    for _ in range(3):  # a lost compare-and-set race is re-read and judged again
        existing = await kv.read(key)
        try:
            if existing is None:
                await kv.create(key, release)
                return "created"
            if isinstance(existing, Undecodable):  # replaced (at its revision), never trusted
                await kv.update(key, release, last=existing.revision)
                return "replaced"
            if existing.value.same_artifact(release):
                return "unchanged"
            if not replace:
                old = existing.value
                raise Refused(
                    f"release {release.version} is already published with another artifact "
                    f"({old.artifact_url}, sha256 {old.sha256[:12]}…); a version must mean the "
                    "same bytes everywhere: publish a new version, or pass --replace",
                    code="release_exists",
                )
            await kv.update(key, release, last=existing.revision)
            return "replaced"
        except Conflict:
            continue
    raise Conflict(f"release {release.version} is being published by someone else; try again")


async def releases(nc: NatsClient) -> list[Release]:
    """Every readable release, sorted by version string."""
    try:
        kv = await FleetKV(nc).releases()
    except NotFound:
        return []
    found = [e.value for e in await kv.snapshot() if not isinstance(e, Undecodable)]
    return sorted(found, key=lambda r: r.version)


@click.group("catalogue", hidden=True)
def release_group() -> None:
    """The unsigned catalogue the Kubernetes mode reads (version -> artifact URL)."""


@release_group.command("publish")
@click.option("--version", "ver", required=True, help="Agent version this artifact is.")
@click.option("--url", required=True, help="Artifact URL (http or https).")
@click.option("--sha256", "sha", required=True, help="SHA-256 of the artifact (64 hex).")
@click.option("--size", type=click.IntRange(1), default=None, help="Artifact size in bytes.")
@click.option("--notes", default="", help="Free text shown by `fleet release list`.")
@click.option("--replace", is_flag=True, help="Replace an existing version's artifact.")
@click.option("--json", "as_json", is_flag=True)
@nats_options
def publish_cmd(
    ver: str,
    url: str,
    sha: str,
    size: int | None,
    notes: str,
    replace: bool,
    as_json: bool,
    **nats_kwargs: Any,
) -> None:
    """Publish --version as the artifact at --url."""
    if not url.startswith(("http://", "https://")):
        raise bad_flag("--url", f"{url!r} is not an http(s) URL")
    release = Release(
        version=version(ver),
        artifact_url=url,
        sha256=sha256_hex(sha),
        size=size,
        published_at=time.time(),
        published_by=who(),
        notes=notes,
    )
    options = build_nats_options(**nats_kwargs)

    async def go() -> str:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            return await publish(nc, release, replace=replace)
        finally:
            await nc.close()

    outcome = asyncio.run(go())
    if as_json:
        print_json({"outcome": outcome, "release": msgspec.to_builtins(release)})
    else:
        click.echo(f"release {release.version}: {outcome}")


@release_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of releases.")
@nats_options
def list_cmd(as_json: bool, **nats_kwargs: Any) -> None:
    """Show every published release."""
    options = build_nats_options(**nats_kwargs)

    async def go() -> list[Release]:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            return await releases(nc)
        finally:
            await nc.close()

    rows = asyncio.run(go())
    if as_json:
        print_json(msgspec.to_builtins(rows))
        return
    if not rows:
        click.echo("no releases published yet")
        raise SystemExit(exit_codes.OK)
    table = Table(box=None, header_style="bold")
    for col in ("VERSION", "SHA256", "SIZE", "URL", "PUBLISHED BY", "NOTES"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.version,
            r.sha256[:12],
            str(r.size) if r.size is not None else "",
            r.artifact_url,
            r.published_by,
            r.notes[:60],
        )
    Console().print(table)


def register(group: click.Group) -> None:
    """Add ``catalogue`` under ``group`` (``fleet release``)."""
    group.add_command(release_group)
