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
it (3), an upgrade is in flight (4: one at a time). The decision is
:func:`~harmony_fleet.core.upgrade.requests.rollback_marker` (pure); reading what it needs is
:func:`~harmony_fleet.adapters.nats.fleet_kv.plan_rollback`; writing and following the marker is
shared with ``fleet upgrade``.
"""

from __future__ import annotations

from typing import Any

import click

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import plan_rollback
from harmony_fleet.cli._common import build_nats_options, nats_options
from harmony_fleet.cli.request import protocol_options, request, timeouts_of, who
from harmony_fleet.contracts import UpgradeMarker, device_id
from harmony_fleet.core.upgrade.requests import Until


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
    until: str,
    as_json: bool,
    **nats_kwargs: Any,
) -> None:
    """Return DEVICE to the version it ran before (kept on disk: nothing is downloaded)."""
    dev = device_id(device)
    timeouts = timeouts_of(
        self_test_timeout, cutover_timeout, hold_timeout, watch_window, watch_failures
    )
    options = build_nats_options(**nats_kwargs)

    async def made(nc: NatsClient) -> UpgradeMarker:
        return await plan_rollback(nc, dev, timeouts=timeouts, force=force, by=who())

    code = request(options, made, "rollback", wait_s=wait_s, until=Until(until), as_json=as_json)
    raise SystemExit(code)


def register(group: click.Group) -> None:
    group.add_command(rollback_cmd)
