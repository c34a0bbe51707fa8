"""``fleet rollback DEVICE``: return a device to the version it ran before.

A manual rollback is an **upgrade whose target is the previous version, already on disk**, so it
gets the same commit discipline as any upgrade (ADR-022): the previous version passes its
self-test, starts as a candidate beside the running agent, and ``current`` moves back only after
the operator itself has seen it heartbeat from a new instance. Then the same watch window.

What is different is where the artifact comes from. The marker says ``source: installed``: the
agent downloads nothing (``artifact_url`` is empty) and refuses if the version is not on disk
(``not_installed``). Integrity is still checked: the marker's SHA-256 is the one the device
recorded when it installed that version, published in its status as ``previous_sha256``, and
the agent hashes ``versions/<previous>/`` against it before running a byte of it.

Refusals, each with its exit code: the device is unknown (3), no previous version is known for
it (3), an upgrade is in flight (4: one at a time).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import msgspec

from harmony_fleet.adapters.nats.connection import NatsClient, connect
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import build_nats_options, nats_options, print_json
from harmony_fleet.cli.upgrade import (
    _kv,
    follow,
    protocol_options,
    timeouts_of,
    who,
    write_marker,
)
from harmony_fleet.contracts import (
    DEVICE_RECORD,
    UPGRADE_MARKER,
    UPGRADE_STATUS,
    DeviceRecord,
    UpgradeMarker,
    UpgradeStatus,
    UpgradeTimeouts,
    device_id,
    new_upgrade_id,
    subjects,
)
from harmony_fleet.contracts.upgrade import ArtifactSource
from harmony_fleet.errors import InvalidMessage, NotFound, Refused


def rollback_marker(
    record: DeviceRecord | None,
    status: UpgradeStatus | None,
    marker: UpgradeMarker | None,
    *,
    device: str,
    timeouts: UpgradeTimeouts,
    force: bool = False,
    requested_by: str = "",
    now: float | None = None,
) -> UpgradeMarker:
    """The marker that returns ``device`` to its previous version, or why there is none.

    ``record`` is the device's registry entry, ``status`` its latest upgrade status and
    ``marker`` its current marker (what the operator last asked for).
    """
    if record is None:
        raise NotFound(f"device {device} is unknown (never seen by the operator)")
    in_flight = status is not None and not status.phase.terminal
    if in_flight and status is not None:
        raise Refused(
            f"{device}: upgrade {status.upgrade_id} to {status.to_version} is in flight "
            f"({status.phase.value}); wait for it to end",
            code="in_flight",
        )
    if marker is not None and (status is None or status.upgrade_id != marker.upgrade_id):
        raise Refused(
            f"{device}: upgrade {marker.upgrade_id} to {marker.target_version} was requested "
            "and has not been taken up yet; wait for it to end",
            code="in_flight",
        )
    previous = status.previous_version if status is not None else None
    if status is None or previous is None:
        raise NotFound(f"{device}: no previous version known (no upgrade has ended here yet)")
    if status.previous_sha256 is None:
        raise NotFound(
            f"{device}: the device recorded no SHA-256 for {previous}; "
            "use `fleet upgrade` with its URL and checksum"
        )
    if record.current_version == previous:
        raise Refused(f"{device} already runs {previous}", code="already_running")
    return UpgradeMarker(
        upgrade_id=new_upgrade_id(),
        device_id=record.device_id,
        target_version=previous,
        artifact_url="",
        sha256=status.previous_sha256,
        requested_at=time.time() if now is None else now,
        requested_by=requested_by,
        force=force,
        timeouts=timeouts,
        source=ArtifactSource.INSTALLED,
    )


async def plan_rollback(
    nc: NatsClient, device: str, *, timeouts: UpgradeTimeouts, force: bool = False, by: str = ""
) -> UpgradeMarker:
    """Read what the fleet knows about ``device`` and build its rollback marker (not written)."""
    key = subjects.kv_key(device)
    records = await _kv(nc, subjects.BUCKET_DEVICES, DEVICE_RECORD)
    statuses = await _kv(nc, subjects.BUCKET_UPGRADE_STATUS, UPGRADE_STATUS)
    markers = await _kv(nc, subjects.BUCKET_UPGRADE_MARKER, UPGRADE_MARKER)
    record = await records.get(key)
    status = await statuses.get(key)
    try:
        marker = await markers.get(key)
    except InvalidMessage:
        marker = None
    return rollback_marker(
        record.value if record is not None else None,
        status.value if status is not None else None,
        marker.value if marker is not None else None,
        device=device,
        timeouts=timeouts,
        force=force,
        requested_by=by,
    )


@click.command("rollback")
@click.argument("device")
@click.option("--force", is_flag=True, help="Even if that version failed here before.")
@protocol_options
@nats_options
def rollback_cmd(
    device: str,
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
    """Return DEVICE to the version it ran before (kept on disk: nothing is downloaded)."""
    dev = device_id(device)
    timeouts = timeouts_of(
        self_test_timeout, cutover_timeout, hold_timeout, watch_window, watch_failures
    )
    options = build_nats_options(**nats_kwargs)

    async def go() -> int:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            marker = await plan_rollback(nc, dev, timeouts=timeouts, force=force, by=who())
            await write_marker(nc, marker)
            if as_json and wait_s is None:
                print_json(msgspec.to_builtins(marker))
            elif not as_json:
                click.echo(
                    f"{dev}: rollback {marker.upgrade_id} to {marker.target_version} requested"
                )
            if wait_s is None:
                return exit_codes.OK
            return await follow(nc, marker, wait_s, as_json)
        finally:
            await nc.close()

    raise SystemExit(asyncio.run(go()))


def register(group: click.Group) -> None:
    group.add_command(rollback_cmd)
