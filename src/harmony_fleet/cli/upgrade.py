"""``fleet upgrade`` and ``fleet upgrade-status``: ask for an agent upgrade and follow it.

``fleet upgrade`` writes the device's upgrade marker through
:func:`~harmony_fleet.adapters.nats.fleet_kv.write_marker` (compare-and-set, so two people asking
at once cannot silently overwrite each other); the device's agent and the operator's coordinator
do the rest (ADR-022). ``--wait`` follows the status until the upgrade ends and exits 0 on
success, 1 on a rollback or failure, 5 when another request superseded it. Success comes, by
default, only once the post-commit watch window (``--watch-window``) has passed: until then the
status says "committed, watched until ...", because the device may still return to the previous
version by itself. ``--until committed`` returns at the commit instead.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Entry, Undecodable
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import (
    build_nats_options,
    nats_options,
    print_json,
    tuf_root_option,
)
from harmony_fleet.cli.artifact_flags import allow_http_option, check_url_flag
from harmony_fleet.cli.request import protocol_options, request, timeouts_of, who
from harmony_fleet.contracts import (
    UpgradeMarker,
    UpgradeStatus,
    device_id,
    new_upgrade_id,
    sha256_hex,
    subjects,
    version,
)
from harmony_fleet.core.upgrade.requests import Until, describe
from harmony_fleet.errors import NotFound


async def signed_marker(nc: NatsClient, marker: UpgradeMarker, root: Path) -> UpgradeMarker:
    """``marker`` with the SHA-256 and length of its version as the signed release metadata
    says (verified from ``root`` by the operator's lookup; python-tuf loaded only here)."""
    from harmony_fleet.operator.releases import SignedReleases  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="fleet-tuf-") as state:
        release = await SignedReleases(nc, root, Path(state))(marker.target_version)
    if release is None:
        raise NotFound(
            f"{marker.target_version} is not a signed release: "
            f"fleet release publish ARTIFACT --version {marker.target_version}"
        )
    return msgspec.structs.replace(
        marker,
        artifact_url=marker.artifact_url or release.url,
        sha256=release.sha256,
        size=release.length,
    )


@click.command("upgrade")
@click.argument("device")
@click.option("--version", "target", required=True, help="Target agent version.")
@click.option(
    "--url",
    default=None,
    help="Artifact URL: https (plain http only for the device itself). With --tuf-root: a hint.",
)
@click.option("--sha256", "sha", default=None, help="SHA-256 of the artifact (64 hex).")
@click.option("--size", type=click.IntRange(1), default=None, help="Artifact size in bytes.")
@tuf_root_option(
    "The release repository's root.json: take the SHA-256 and size of --version from the "
    "signed release metadata (then --url and --sha256 are not needed)."
)
@click.option("--force", is_flag=True, help="Install even if this version failed here before.")
@allow_http_option
@protocol_options
@nats_options
def upgrade_cmd(
    device: str,
    target: str,
    url: str | None,
    sha: str | None,
    size: int | None,
    tuf_root: Path | None,
    force: bool,
    allow_http_artifacts: bool,
    self_test_timeout: float,
    cutover_timeout: float,
    hold_timeout: float,
    watch_window: float,
    watch_failures: int,
    wait_s: float | None,
    until: str,
    as_json: bool,
    **nats_kwargs: Any,
) -> None:
    """Ask DEVICE's agent to upgrade itself to --version (a signed release with --tuf-root, or
    the artifact at --url with --sha256)."""
    if tuf_root is None and (url is None or sha is None):
        raise click.UsageError("give --url and --sha256, or --tuf-root to use signed releases")
    if url is not None:
        check_url_flag("--url", url, allow_http_artifacts)
    marker = UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=device_id(device),
        target_version=version(target),
        artifact_url=url or "",
        sha256=sha256_hex(sha) if sha is not None else "0" * 64,
        size=size,
        requested_at=time.time(),
        requested_by=who(),
        force=force,
        timeouts=timeouts_of(
            self_test_timeout, cutover_timeout, hold_timeout, watch_window, watch_failures
        ),
    )
    options = build_nats_options(**nats_kwargs)

    async def made(nc: NatsClient) -> UpgradeMarker:
        if tuf_root is None:
            return marker
        return await signed_marker(nc, marker, tuf_root)

    code = request(options, made, "upgrade", wait_s=wait_s, until=Until(until), as_json=as_json)
    raise SystemExit(code)


@click.command("upgrade-status")
@click.argument("device", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of statuses.")
@nats_options
def upgrade_status_cmd(device: str | None, as_json: bool, **nats_kwargs: Any) -> None:
    """Show the latest upgrade of every device (or of DEVICE)."""
    dev = device_id(device) if device else None
    options = build_nats_options(**nats_kwargs)

    mismatched: list[tuple[str, str]] = []

    def keyed(entry: Entry[UpgradeStatus] | Undecodable) -> list[UpgradeStatus | Undecodable]:
        # The key is what the server vouches for (a device writes only its own); a body naming
        # another device is a forgery, shown as such, never filed under the device it names.
        if isinstance(entry, Undecodable):
            return [entry]
        if entry.value.device_id != entry.key:
            mismatched.append((entry.key, entry.value.device_id))
            return []
        return [entry.value]

    async def go() -> tuple[list[UpgradeStatus | Undecodable], list[Undecodable]]:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            kv = FleetKV(nc)
            try:
                statuses, markers = await kv.statuses(), await kv.markers()
            except NotFound:
                return [], []
            if dev is not None:
                key = subjects.kv_key(dev)
                found, marker = await statuses.read(key), await markers.read(key)
                rows = [] if found is None else keyed(found)
                return rows, [marker] if isinstance(marker, Undecodable) else []
            every = [row for e in await statuses.snapshot() for row in keyed(e)]
            bad_markers = [m for m in await markers.snapshot() if isinstance(m, Undecodable)]
            return sorted(every, key=_device_of), bad_markers
        finally:
            await nc.close()

    rows, bad_markers = asyncio.run(go())
    good = [r for r in rows if not isinstance(r, Undecodable)]
    unreadable = [r for r in rows if isinstance(r, Undecodable)] + bad_markers
    if as_json:
        print_json(msgspec.to_builtins(good))
    else:
        _print_statuses(rows, dev)
    for key, named in mismatched:
        click.echo(
            f"fleet: {key}: its status names device {named!r}: ignored (a device writes only "
            "its own key; the body is not believed)",
            err=True,
        )
    for bad in unreadable:
        what = "upgrade marker" if bad.bucket == subjects.BUCKET_UPGRADE_MARKER else "status"
        fix = "; the next `fleet upgrade` replaces it" if what == "upgrade marker" else ""
        click.echo(
            f"fleet: {bad.key}: the {what} does not decode (revision {bad.revision}): "
            f"{bad.error.field}: {bad.error.reason}{fix}",
            err=True,
        )
    if not rows and dev and not unreadable:
        raise SystemExit(exit_codes.NOT_FOUND)


def _device_of(row: UpgradeStatus | Undecodable) -> str:
    return row.key if isinstance(row, Undecodable) else row.device_id


def _print_statuses(rows: list[UpgradeStatus | Undecodable], dev: str | None) -> None:
    if not rows:
        click.echo("no upgrades yet" + (f" for {dev}" if dev else ""))
        return
    table = Table(box=None, header_style="bold")
    for col in ("DEVICE", "UPGRADE", "PHASE", "FROM", "TO", "DETAIL", "UPDATED"):
        table.add_column(col)
    now = time.time()
    for s in rows:
        if isinstance(s, Undecodable):
            detail = f"status does not decode: {s.error.field}: {s.error.reason}"
            table.add_row(s.key, "?", "Undecodable", "", "", detail[:80], "")
            continue
        detail = describe(s, now)
        if s.candidate_exit_code is not None:
            detail += f" (candidate exit {s.candidate_exit_code})"
        table.add_row(
            s.device_id,
            s.upgrade_id,
            s.phase.value,
            s.from_version,
            s.to_version,
            detail[:80],
            f"{max(0.0, now - s.updated_at):.0f}s ago",
        )
    Console().print(table)
    click.echo(  # where a candidate's log lines are (docs/logs.md)
        "".join(
            f"{s.device_id}: candidate logs: "
            f"fleet logs {s.device_id} --instance {s.candidate_instance_id}\n"
            for s in rows
            if not isinstance(s, Undecodable) and s.candidate_instance_id
        ),
        nl=False,
    )


def register(group: click.Group) -> None:
    group.add_command(upgrade_cmd)
    group.add_command(upgrade_status_cmd)
