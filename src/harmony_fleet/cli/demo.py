"""``fleet demo``: agent self-upgrade with automatic rollback, live, on one machine.

It starts embedded NATS, the operator, an artifact server and a few devices (each a supervised
real agent artifact in its own prefix), builds v1 (running), v2 (good), a broken v3 (passes its
self-test, then never heartbeats) and a v4 that passes everything up to the commit and then
crashes a few seconds into each run as the main instance. It upgrades every device to v2 with a
live table, tries v3 and shows the automatic rollback before the commit, then tries v4 and shows
the rollback *after* the commit: inside the watch window (:data:`DEMO_WATCH_S`) the supervisor,
not the operator, returns each device to v2 and the status says why. With ``--json`` its last
line is a JSON object with per-device results (``upgrade``, ``broken_upgrade``,
``post_commit_upgrade``), the heartbeat interval, the largest heartbeat gap seen during the
upgrades to v2 and v3 (the figures the first two tables showed; v4 crashes on purpose, so its
gaps say nothing about the upgrade mechanism), and the times to commit, to roll back, and from
the commit to the post-commit rollback. Everything it started is stopped on exit, Ctrl-C
included.

What is printed is built by pure functions (:func:`upgrade_table`, :func:`summary_table`,
:func:`verdict_line`) from plain rows, so the output can be tested without a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.live import Live

from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import print_json, setup_logging
from harmony_fleet.cli.demo_output import (
    DEMO_WATCH_S,
    GAP_UPGRADES,
    V1,
    V2,
    V3,
    V4,
    V_TAMPERED,
    Row,
    largest_gaps,
    print_heading,
    summary_table,
    upgrade_table,
    verdict_line,
)
from harmony_fleet.cli.demo_ui import DemoDashboard, ui_options
from harmony_fleet.contracts import AgentUpgradePhase, UpgradeStatus, UpgradeTimeouts
from harmony_fleet.core.upgrade.requests import describe
from harmony_fleet.testing.localfleet import LocalFleet

if TYPE_CHECKING:  # python-tuf is imported when the demo runs (see run_demo)
    from harmony_fleet.testing.releases import LocalReleases

Phase = AgentUpgradePhase
#: v4 crashes this long into each run as the main instance (three runs fit in the window).
V4_CRASH_AFTER_S = 3


@dataclass
class Tracked:
    """One device's view of one upgrade, as the demo saw it (its own clock)."""

    device: str
    upgrade_id: str
    target: str
    requested: float
    status: UpgradeStatus | None = None
    seen: dict[str, float] = field(default_factory=dict)
    """phase -> seconds after the request when the demo first saw it."""

    def note(self, status: UpgradeStatus | None, now: float) -> None:
        if status is None or status.upgrade_id != self.upgrade_id:
            return
        self.status = status
        self.seen.setdefault(status.phase.value, round(now - self.requested, 3))

    @property
    def done(self) -> bool:
        return self.status is not None and self.status.phase.terminal

    def summary(self) -> dict[str, Any]:
        s = self.status
        return {
            "to": self.target,
            "upgrade_id": self.upgrade_id,
            "outcome": s.phase.value if s else "Unknown",
            "error_code": s.error_code if s else "",
            "error_detail": s.error_detail if s else "",
            "time_to_commit_s": self.seen.get(
                Phase.COMMITTED.value, self.seen.get(Phase.SUCCEEDED.value)
            ),
            "time_to_succeed_s": self.seen.get(Phase.SUCCEEDED.value),
            "time_to_rollback_s": self.seen.get(Phase.ROLLED_BACK.value),
            "candidate_exit_code": s.candidate_exit_code if s else None,
            "phases_seen": self.seen,
        }

    def post_commit_summary(self) -> dict[str, Any]:
        """:meth:`summary`, plus how long the device ran the new version before it came back."""
        s = self.status
        out = self.summary()
        committed, back = (
            self.seen.get(Phase.COMMITTED.value),
            self.seen.get(Phase.ROLLED_BACK.value),
        )
        out["time_to_post_commit_rollback_s"] = (
            round(back - committed, 3) if committed is not None and back is not None else None
        )
        out["error_detail"] = s.error_detail if s else ""
        out["candidate_log_tail"] = list(s.candidate_log_tail[-3:]) if s else []
        return out


def rows_of(fleet: LocalFleet, tracked: dict[str, Tracked], now: float) -> list[Row]:
    """What the table shows now: each device's status and heartbeat gap, read once."""
    out = []
    for name, t in tracked.items():
        s = t.status
        beats = fleet.monitor.devices.get(name)
        out.append(
            Row(
                device=name,
                runs=beats.last.agent_version if beats and beats.last else "?",
                target=t.target,
                phase=s.phase.value if s else "Requested",
                detail=describe(s, now)[:60] if s is not None else "",
                gap_s=beats.max_gap_s if beats else None,
            )
        )
    return out


async def _upgrade_all(
    fleet: LocalFleet,
    version: str,
    timeouts: UpgradeTimeouts,
    console: Console,
    deadline_s: float,
) -> tuple[dict[str, Tracked], list[Row]]:
    """Upgrade every device to ``version`` under a live table; the last rows shown."""
    fleet.monitor.reset()
    tracked: dict[str, Tracked] = {}
    for name in fleet.devices:
        marker = await fleet.request_upgrade(name, version, timeouts=timeouts)
        tracked[name] = Tracked(name, marker.upgrade_id, version, time.monotonic())
    print_heading(console, version)
    end = time.monotonic() + deadline_s
    rows = rows_of(fleet, tracked, time.time())
    # Transient: the live rendering is erased at the end and the final table printed as a
    # normal renderable, which ends with a newline on a terminal and in a pipe alike.
    with Live(upgrade_table(rows), console=console, refresh_per_second=8, transient=True) as live:
        while time.monotonic() < end and not all(t.done for t in tracked.values()):
            for name, t in tracked.items():
                t.note(await fleet.status(name), time.monotonic())
            rows = rows_of(fleet, tracked, time.time())
            live.update(upgrade_table(rows))
            await asyncio.sleep(0.1)
    rows = rows_of(fleet, tracked, time.time())
    console.print(upgrade_table(rows))
    return tracked, rows


async def _wait_online(fleet: LocalFleet, version: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        beats = [fleet.monitor.devices.get(n) for n in fleet.devices]
        if all(
            b is not None and b.last is not None and b.last.agent_version == version for b in beats
        ):
            return
        await asyncio.sleep(0.1)
    raise click.ClickException(f"devices did not come online with {version} in {deadline_s} s")


def _stats(values: list[float | None]) -> dict[str, float | None]:
    real = [v for v in values if v is not None]
    if not real:
        return {"max": None, "mean": None}
    return {"max": round(max(real), 3), "mean": round(statistics.fmean(real), 3)}


async def run_demo(
    workdir: Path, devices: int, interval: float, console: Console, ui: DemoDashboard | None = None
) -> dict[str, Any]:
    async with LocalFleet(workdir, interval_s=interval) as fleet:
        console.print(f"[bold]harmony-fleet demo[/] in {workdir}: NATS at {fleet.url}")
        console.print(
            "building agent artifacts v1, v2, a broken v3 (never heartbeats) and a v4 that "
            f"crashes {V4_CRASH_AFTER_S} s into each run as the main instance ..."
        )
        for version, faults in (
            (V1, ()),
            (V2, ()),
            (V_TAMPERED, ()),
            (V3, ("no-heartbeat",)),
            (V4, (f"crash-as-main-after={V4_CRASH_AFTER_S}",)),
        ):
            fleet.build(version, faults=faults)
        for version in (V1, V2, V_TAMPERED, V3, V4):  # fleet release publish, each
            await fleet.publish(version)
        releases = fleet.releases
        console.print(
            f"signed releases: {V1}..{V4} published through a TUF repository "
            f"({releases.folder}); every device pins its root"
        )
        for i in range(devices):
            await fleet.add_device(f"demo-{i + 1:02d}", V1)  # pins the repository's root
        security = _security(fleet)
        console.print(
            f"security: TLS against the fleet CA, JWT credentials, {security['device_credentials']}"
            " device credential(s), one per device, each allowed to touch only its own subjects"
        )
        console.print(f"starting {devices} devices on {V1} ...")
        if ui is not None:  # now: while the artifacts were built the loop could not answer
            url = await ui.open(fleet.operator)
            console.print(f"dashboard: [bold]{url}[/]", soft_wrap=True)
        await _wait_online(fleet, V1, 60)
        good, good_rows = await _upgrade_all(
            fleet,
            V2,
            UpgradeTimeouts(self_test_s=60, cutover_s=60, hold_s=120, watch_s=DEMO_WATCH_S),
            console,
            180,
        )
        await _tamper(fleet, releases, V_TAMPERED)
        tampered, _ = await _upgrade_all(
            fleet, V_TAMPERED, UpgradeTimeouts(self_test_s=60, cutover_s=5, hold_s=30), console, 120
        )
        bad, bad_rows = await _upgrade_all(
            fleet,
            V3,
            UpgradeTimeouts(self_test_s=60, cutover_s=5, hold_s=30),
            console,
            180,
        )
        gaps = largest_gaps(good_rows, bad_rows)
        after, after_rows = await _upgrade_all(
            fleet,
            V4,
            UpgradeTimeouts(
                self_test_s=60, cutover_s=60, hold_s=120, watch_s=DEMO_WATCH_S, watch_max_failures=3
            ),
            console,
            180,
        )
        await _wait_online(fleet, V2, 60)
        runs = {
            n: fleet.monitor.devices[n].last.agent_version  # type: ignore[union-attr]
            for n in fleet.devices
        }
    shown = {V2: largest_gaps(good_rows), V3: largest_gaps(bad_rows), V4: largest_gaps(after_rows)}
    per_device = {
        n: {
            "upgrade": {**good[n].summary(), "max_heartbeat_gap_s": shown[V2].get(n)},
            "tampered_upgrade": tampered[n].summary(),
            "broken_upgrade": {**bad[n].summary(), "max_heartbeat_gap_s": shown[V3].get(n)},
            "post_commit_upgrade": {
                **after[n].post_commit_summary(),
                "max_heartbeat_gap_s": shown[V4].get(n),
            },
            "max_heartbeat_gap_s": round(gaps.get(n, 0.0), 2),
            "runs": runs[n],
        }
        for n in good
    }
    ok = all(
        good[n].status is not None
        and good[n].status.phase is Phase.SUCCEEDED  # type: ignore[union-attr]
        and tampered[n].status is not None
        and tampered[n].status.phase is Phase.FAILED  # type: ignore[union-attr]
        and tampered[n].status.error_code == "untrusted"  # type: ignore[union-attr]
        and bad[n].status is not None
        and bad[n].status.phase is Phase.ROLLED_BACK  # type: ignore[union-attr]
        and after[n].status is not None
        and after[n].status.phase is Phase.ROLLED_BACK  # type: ignore[union-attr]
        and after[n].status.error_code == "post_commit"  # type: ignore[union-attr]
        and runs[n] == V2
        for n in good
    )
    return {
        "ok": ok,
        "heartbeat_interval_s": interval,
        "max_heartbeat_gap_s": round(max(gaps.values(), default=0.0), 2),
        "max_heartbeat_gap_covers": [f"upgrade to {v}" for v in GAP_UPGRADES],
        "time_to_commit_s": _stats([good[n].summary()["time_to_commit_s"] for n in good]),
        "time_to_rollback_s": _stats([bad[n].summary()["time_to_rollback_s"] for n in bad]),
        "watch_window_s": DEMO_WATCH_S,
        "time_to_post_commit_rollback_s": _stats(
            [after[n].post_commit_summary()["time_to_post_commit_rollback_s"] for n in after]
        ),
        "security": security,
        "signed_releases": [r.version for r in releases.repository().releases()],
        "devices": per_device,
    }


async def _tamper(fleet: LocalFleet, releases: LocalReleases, version: str) -> None:
    """Replace ``version``'s signed artifact in the object store with other bytes of the same
    length (what a compromised store or mirror would serve)."""
    from harmony_fleet.adapters.nats.fleet_kv import ARTIFACTS  # noqa: PLC0415

    assert fleet.nc is not None
    release = next(r for r in releases.repository().releases() if r.version == version)
    original = (fleet.artifact_dir / fleet.artifacts[version].file).read_bytes()
    forged = original[:-1] + bytes([original[-1] ^ 0xFF])
    store = await fleet.nc.jetstream().object_store(ARTIFACTS.name)
    await store.put(release.object_name, forged)


def _security(fleet: LocalFleet) -> dict[str, Any]:
    """How the demo's NATS is protected, for the summary, read back from the server's own
    records: the same secure default as ``fleet server`` (TLS, one credential per device)."""
    assert fleet.server is not None
    issued = fleet.server.auth.issued().values()
    return {
        "tls": fleet.url.startswith("tls://"),
        "auth": "jwt",
        "device_credentials": sum(1 for i in issued if i.role == "device" and not i.revoked),
    }


def _print_summary(result: dict[str, Any], console: Console) -> None:
    console.print()
    console.print("[bold]summary[/]")
    console.print(summary_table(result))
    console.print(verdict_line(result))


@click.command("demo")
@click.option("--devices", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(0.5, 10), default=1.0, show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON summary line.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep everything (logs, prefixes) here instead of a temporary folder.",
)
@ui_options
def demo_cmd(
    devices: int,
    heartbeat_interval: float,
    as_json: bool,
    workdir: Path | None,
    ui: bool,
    ui_port: int,
) -> None:
    """Upgrade local devices to a good version, then to broken ones, and watch the rollbacks."""
    setup_logging(False, "ERROR", stream=sys.stderr)
    console = Console(stderr=as_json)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-demo-")))
        dashboard = DemoDashboard(workdir, ui_port) if ui else None
        result = asyncio.run(_main(workdir, devices, heartbeat_interval, console, dashboard))
    if result is None:
        raise SystemExit(exit_codes.INTERRUPTED)
    _print_summary(result, console)
    if as_json:
        print_json(result)
    raise SystemExit(exit_codes.OK if result["ok"] else exit_codes.FAILED)


async def _main(
    workdir: Path, devices: int, interval: float, console: Console, ui: DemoDashboard | None
) -> Any:
    task = asyncio.ensure_future(run_demo(workdir, devices, interval, console, ui))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        console.print("interrupted: everything the demo started has been stopped")
        return None


def register(group: click.Group) -> None:
    group.add_command(demo_cmd)
