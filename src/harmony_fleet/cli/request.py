"""What ``fleet upgrade`` and ``fleet rollback`` share: the protocol flags, writing the marker,
saying so, and following the upgrade to its end (``--wait``, ``--until``).

The two commands differ only in how they make the marker; the write is
:func:`~harmony_fleet.adapters.nats.fleet_kv.write_marker` (compare-and-set) and the judgement of
how a followed upgrade ended is :class:`~harmony_fleet.core.upgrade.requests.Follow` (pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, follow, write_marker
from harmony_fleet.adapters.nats.kv import Undecodable
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import print_json
from harmony_fleet.contracts import UpgradeMarker, UpgradeStatus, UpgradeTimeouts
from harmony_fleet.core.upgrade.requests import Ending, Outcome, Until, clock_time, describe

#: Exit code of each way a followed upgrade can end.
EXIT_OF = {
    Ending.OK: exit_codes.OK,
    Ending.COMMITTED: exit_codes.OK,
    Ending.FAILED: exit_codes.FAILED,
    Ending.SUPERSEDED: exit_codes.SUPERSEDED,
}


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
                help="Follow the upgrade until it ends (or SECONDS pass; 0: no limit).",
            ),
            click.option(
                "--until",
                type=click.Choice([u.value for u in Until]),
                default=Until.SUCCEEDED.value,
                show_default=True,
                help="With --wait, return at the commit, or once the watch window has passed "
                "and the device will not go back by itself.",
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


def request(
    options: NatsOptions,
    make: Callable[[NatsClient], Awaitable[UpgradeMarker]],
    what: str,
    *,
    wait_s: float | None,
    until: Until,
    as_json: bool,
) -> int:
    """Connect, build the marker, write it, say so, and with ``wait_s`` follow it; the exit code.

    ``fleet upgrade`` and ``fleet rollback`` differ only in how they make the marker.
    """

    async def go() -> int:
        nc = await connect(options.with_name("fleet-cli"))
        try:
            kv = FleetKV(nc)
            marker = await make(nc)
            previous = await write_marker(kv, marker)
            if as_json and wait_s is None:
                print_json(msgspec.to_builtins(marker))
            elif not as_json:
                click.echo(
                    f"{marker.device_id}: {what} {marker.upgrade_id} to "
                    f"{marker.target_version} requested"
                )
                if isinstance(previous, Undecodable):
                    click.echo(f"  (replaces an {previous})", err=True)
                elif previous is not None:
                    click.echo(
                        f"  (replaces marker {previous.upgrade_id} for {previous.target_version})",
                        err=True,
                    )
            if wait_s is None:
                return exit_codes.OK
            return await follow_to_end(kv, marker, wait_s, as_json, until=until)
        finally:
            await nc.close()

    return asyncio.run(go())


async def follow_to_end(
    kv: FleetKV,
    marker: UpgradeMarker,
    wait_s: float,
    as_json: bool,
    *,
    until: Until = Until.SUCCEEDED,
) -> int:
    """Print the status as it changes until upgrade ``marker`` ends; the exit code."""
    uid = marker.upgrade_id
    last_line = ""
    status: UpgradeStatus | None = None
    outcome: Outcome | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s or None):
            async for reading in follow(kv, marker.device_id, uid, until=until):
                status = reading.seen.decoded_status
                if status is not None and status.upgrade_id == uid and not as_json:
                    line = status_line(status, time.time())
                    if line != last_line:
                        click.echo(line, err=True)
                        last_line = line
                outcome = reading.outcome
    if outcome is None:
        click.echo(
            f"fleet: still in progress after {wait_s} s; follow it with "
            f"`fleet upgrade-status {marker.device_id}`",
            err=True,
        )
        return exit_codes.TEMPFAIL
    ours = status if status is not None and status.upgrade_id == uid else None
    if as_json:
        print_json(
            {
                "upgrade_id": uid,
                "outcome": outcome.ending.value,
                "superseded_by": outcome.superseded_by,
                "watch_until": ours.watch_until if ours is not None else None,
                "status": msgspec.to_builtins(ours) if ours else None,
            }
        )
    else:
        click.echo(f"{marker.device_id}: upgrade {uid}: {_ended(outcome, ours)}")
    return EXIT_OF[outcome.ending]


def _ended(outcome: Outcome, status: UpgradeStatus | None) -> str:
    if outcome.ending is Ending.SUPERSEDED:
        by = f" by upgrade {outcome.superseded_by}" if outcome.superseded_by else ""
        return f"superseded{by} (a newer request): follow that one"
    if outcome.ending is Ending.COMMITTED:
        if status is not None and status.watch_until is not None:
            return f"committed, watched until {clock_time(status.watch_until)}"
        return "committed"
    return outcome.ending.value


def status_line(s: UpgradeStatus, now: float) -> str:
    """One line about ``s`` for a person: the device, the phase and :func:`describe`."""
    detail = describe(s, now)
    if detail.lower().startswith(s.phase.value.lower()):  # "committed, watched until ..."
        return f"{s.device_id}: {detail}"
    return f"{s.device_id}: {s.phase.value}" + (f"  {detail}" if detail else "")


def who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
