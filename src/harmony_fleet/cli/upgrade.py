"""``fleet upgrade`` and ``fleet upgrade-status``: ask for an agent upgrade and follow it.

``fleet upgrade`` writes the device's upgrade marker (compare-and-set, so two people asking at
once cannot silently overwrite each other); the device's agent and the operator's coordinator do
the rest (ADR-022). ``--wait`` follows the status until the upgrade is terminal and exits 0 on
success, 1 on a rollback or failure. Success comes only once the post-commit watch window
(``--watch-window``) has passed: until then the status says Committed and when the window ends,
because the device may still return to the previous version by itself.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.table import Table

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.adapters.nats.kv import TypedKV, open_bucket
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import build_nats_options, nats_options, print_json
from harmony_fleet.contracts import (
    DEVICE_RECORD,
    UPGRADE_MARKER,
    UPGRADE_STATUS,
    AgentUpgradePhase,
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    device_id,
    new_upgrade_id,
    sha256_hex,
    subjects,
    version,
)
from harmony_fleet.errors import Conflict, InvalidMessage, NotFound


async def _kv(nc: NatsClient, bucket: str, codec: Any, *, create: bool = True) -> TypedKV[Any]:
    return TypedKV(await open_bucket(nc.jetstream(), bucket, create=create), codec, name=bucket)


async def write_marker(nc: NatsClient, marker: UpgradeMarker) -> UpgradeMarker | None:
    """Write ``marker`` with compare-and-set; return the marker it replaced, if any."""
    markers = await _kv(nc, subjects.BUCKET_UPGRADE_MARKER, UPGRADE_MARKER)
    key = subjects.kv_key(marker.device_id)
    try:
        previous = await markers.get(key)
    except InvalidMessage:
        previous = None  # an unreadable marker is replaced, not kept
    if previous is None:
        try:
            await markers.create(key, marker)
        except Conflict:
            raise Conflict(
                "another upgrade was requested for this device at the same time; "
                "look at `fleet upgrade-status` and try again"
            ) from None
        return None
    await markers.update(key, marker, last=previous.revision)
    return previous.value  # type: ignore[no-any-return]


def _outcome(status: UpgradeStatus | None, record: DeviceRecord | None, uid: str) -> str | None:
    """'ok', 'failed' or None (not finished yet) for upgrade ``uid``."""
    if status is not None and status.upgrade_id == uid:
        if status.phase is AgentUpgradePhase.SUCCEEDED:
            return "ok"
        if status.phase in (AgentUpgradePhase.ROLLED_BACK, AgentUpgradePhase.FAILED):
            return "failed"
    up = record.upgrade if record is not None else None
    if up is not None and up.upgrade_id == uid and up.phase is AgentUpgradePhase.SUCCEEDED:
        return "ok"
    return None


F = TypeVar("F", bound=Callable[..., Any])


def protocol_options(f: F) -> F:
    """The bounds of an upgrade's phases and the follow-up flags (``upgrade``, ``rollback``)."""
    for option in reversed(
        (
            click.option(
                "--self-test-timeout",
                type=click.FloatRange(1, 3600),
                default=60.0,
                show_default=True,
            ),
            click.option(
                "--cutover-timeout",
                type=click.FloatRange(1, 86400),
                default=120.0,
                show_default=True,
                help="Wait for the stop with no candidate heartbeat seen.",
            ),
            click.option(
                "--hold-timeout",
                type=click.FloatRange(1, 86400),
                default=600.0,
                show_default=True,
                help="Wait for the stop while the candidate heartbeats.",
            ),
            click.option(
                "--watch-window",
                type=click.FloatRange(0, 7 * 86400),
                default=600.0,
                show_default=True,
                help="After the commit, roll back by itself if the new version crash-loops or "
                "stops heartbeating within this many seconds (0: no watch).",
            ),
            click.option(
                "--watch-failures",
                type=click.IntRange(1, 100),
                default=3,
                show_default=True,
                help="Failed starts within the watch window that make a crash loop.",
            ),
            click.option(
                "--wait",
                "wait_s",
                type=click.FloatRange(0),
                default=None,
                metavar="SECONDS",
                help="Follow the upgrade until it ends (or SECONDS pass).",
            ),
            click.option("--json", "as_json", is_flag=True),
        )
    ):
        f = option(f)
    return f


def timeouts_of(
    self_test_timeout: float,
    cutover_timeout: float,
    hold_timeout: float,
    watch_window: float,
    watch_failures: int,
) -> UpgradeTimeouts:
    return UpgradeTimeouts(
        self_test_s=self_test_timeout,
        cutover_s=cutover_timeout,
        hold_s=hold_timeout,
        watch_s=watch_window,
        watch_max_failures=watch_failures,
    )


@click.command("upgrade")
@click.argument("device")
@click.option("--version", "target", required=True, help="Target agent version.")
@click.option("--url", required=True, help="Artifact URL (http or https).")
@click.option("--sha256", "sha", required=True, help="SHA-256 of the artifact (64 hex).")
@click.option("--size", type=click.IntRange(1), default=None, help="Artifact size in bytes.")
@click.option("--force", is_flag=True, help="Install even if this version failed here before.")
@protocol_options
@nats_options
def upgrade_cmd(
    device: str,
    target: str,
    url: str,
    sha: str,
    size: int | None,
    force: bool,
    self_test_timeout: float,
    cutover_timeout: float,
    hold_timeout: float,
    watch_window: float,
    watch_failures: int,
    wait_s: float | None,
    as_json: bool,
    **nats_kwargs: Any,
) -> None:
    """Ask DEVICE's agent to upgrade itself to --version from --url."""
    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--url")
    marker = UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=device_id(device),
        target_version=version(target),
        artifact_url=url,
        sha256=sha256_hex(sha),
        size=size,
        requested_at=time.time(),
        requested_by=who(),
        force=force,
        timeouts=timeouts_of(
            self_test_timeout, cutover_timeout, hold_timeout, watch_window, watch_failures
        ),
    )
    options = build_nats_options(**nats_kwargs)

    async def go() -> int:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            previous = await write_marker(nc, marker)
            if as_json and wait_s is None:
                print_json(msgspec.to_builtins(marker))
            elif not as_json:
                click.echo(
                    f"{marker.device_id}: upgrade {marker.upgrade_id} to "
                    f"{marker.target_version} requested"
                )
                if previous is not None:
                    click.echo(
                        f"  (replaces marker {previous.upgrade_id} for {previous.target_version})",
                        err=True,
                    )
            if wait_s is None:
                return exit_codes.OK
            return await follow(nc, marker, wait_s, as_json)
        finally:
            await nc.close()

    raise SystemExit(asyncio.run(go()))


async def follow(nc: NatsClient, marker: UpgradeMarker, wait_s: float, as_json: bool) -> int:
    """Print the status as it changes until upgrade ``marker`` ends; the exit code."""
    statuses = await _kv(nc, subjects.BUCKET_UPGRADE_STATUS, UPGRADE_STATUS)
    devices = await _kv(nc, subjects.BUCKET_DEVICES, DEVICE_RECORD)
    key = subjects.kv_key(marker.device_id)
    deadline = time.monotonic() + (wait_s or float("inf"))
    last_line = ""
    status: UpgradeStatus | None = None
    while time.monotonic() < deadline:
        entry = await statuses.get(key)
        status = entry.value if entry is not None else None
        rec_entry = await devices.get(key)
        record = rec_entry.value if rec_entry is not None else None
        if status is not None and status.upgrade_id == marker.upgrade_id:
            line = _status_line(status)
            if line != last_line and not as_json:
                click.echo(line, err=True)
                last_line = line
        outcome = _outcome(status, record, marker.upgrade_id)
        if outcome is not None:
            if as_json:
                print_json(
                    {
                        "upgrade_id": marker.upgrade_id,
                        "outcome": outcome,
                        "status": msgspec.to_builtins(status) if status else None,
                    }
                )
            else:
                click.echo(f"{marker.device_id}: upgrade {marker.upgrade_id}: {outcome}")
            return exit_codes.OK if outcome == "ok" else exit_codes.FAILED
        await asyncio.sleep(0.2)
    click.echo(
        f"fleet: still in progress after {wait_s} s; follow it with "
        f"`fleet upgrade-status {marker.device_id}`",
        err=True,
    )
    return exit_codes.TEMPFAIL


def _status_line(s: UpgradeStatus) -> str:
    parts = [f"{s.device_id}: {s.phase.value}"]
    if s.progress is not None and s.progress.bytes_total:
        done, total = s.progress.bytes_done, s.progress.bytes_total
        parts.append(
            f"{100 * done / total:.0f}% of {total / 1048576:.1f} MiB "
            f"at {s.progress.rate_bps / 1048576:.1f} MiB/s"
        )
    if s.error_code:
        parts.append(f"{s.error_code}: {s.error_detail}")
    watching = watch_note(s)
    if watching:
        parts.append(watching)
    return "  ".join(parts)


def watch_note(s: UpgradeStatus, now: float | None = None) -> str:
    """What the watch of a committed upgrade is waiting for (empty when there is none)."""
    if s.phase is not AgentUpgradePhase.COMMITTED or s.watch_until is None:
        return ""
    until = time.strftime("%H:%M:%S", time.localtime(s.watch_until))
    if (time.time() if now is None else now) < s.watch_until:
        return f"watching until {until}"
    return f"window ended {until}; watching until the new main has run steadily"


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@click.command("upgrade-status")
@click.argument("device", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of statuses.")
@nats_options
def upgrade_status_cmd(device: str | None, as_json: bool, **nats_kwargs: Any) -> None:
    """Show the latest upgrade of every device (or of DEVICE)."""
    dev = device_id(device) if device else None
    options = build_nats_options(**nats_kwargs)

    async def go() -> list[UpgradeStatus]:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            try:
                statuses = await _kv(
                    nc, subjects.BUCKET_UPGRADE_STATUS, UPGRADE_STATUS, create=False
                )
            except NotFound:
                return []
            if dev is not None:
                entry = await statuses.get(subjects.kv_key(dev))
                return [entry.value] if entry is not None else []
            return sorted(
                (e.value for e in await statuses.snapshot() if not isinstance(e, InvalidMessage)),
                key=lambda s: s.device_id,
            )
        finally:
            await nc.close()

    rows = asyncio.run(go())
    if as_json:
        print_json(msgspec.to_builtins(rows))
        return
    if not rows:
        click.echo("no upgrades yet" + (f" for {dev}" if dev else ""))
        if dev:
            raise SystemExit(exit_codes.NOT_FOUND)
        return
    table = Table(box=None, header_style="bold")
    for col in ("DEVICE", "UPGRADE", "PHASE", "FROM", "TO", "DETAIL", "UPDATED"):
        table.add_column(col)
    now = time.time()
    for s in rows:
        detail = f"{s.error_code}: {s.error_detail}" if s.error_code else watch_note(s)
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
    click.echo(  # issue 8: where a candidate's log lines are (docs/logs.md)
        "".join(
            f"{s.device_id}: candidate logs: "
            f"fleet logs {s.device_id} --instance {s.candidate_instance_id}\n"
            for s in rows
            if s.candidate_instance_id
        ),
        nl=False,
    )


def register(group: click.Group) -> None:
    group.add_command(upgrade_cmd)
    group.add_command(upgrade_status_cmd)
