"""``fleet agent install`` / ``uninstall`` and argument passing, against a real systemd."""

from __future__ import annotations

import json
import sys

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.core.upgrade.watch import first_touch_bound, stale_after
from tests.helpers import eventually
from tests.systemd.conftest import OLD
from tests.systemd.nspawn import Machine
from tests.systemd.support import (
    HERE,
    PREFIX,
    SERVICE,
    Served,
    current,
    fleet,
    heartbeats,
    main_pid,
    versions,
)

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(900)]

HOSTILE = [
    "$HOME",
    "${PATH}",
    "a $$ b",
    "%n %h",
    "; touch /tmp/pwned",
    "`touch /tmp/pwned`",
    "$(touch /tmp/pwned)",
    "x y",
    "it's",
    '"q"',
    "back\\slash",
    "--property=ExecStartPre=/bin/false",
]


def test_hostile_arguments_reach_the_process_verbatim(machine: Machine) -> None:
    """Through ``systemd-run`` and through a unit file: no shell, no expansion, no splitting."""
    out = machine.run(sys.executable, str(HERE / "probe_argv.py"), json.dumps(HOSTILE)).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["run"] == HOSTILE
    assert got["unit"] == HOSTILE
    assert machine.sh("test -e /tmp/pwned", check=False).returncode != 0
    machine.sh("systemctl stop argv-probe-run.service argv-probe-unit.service", check=False)


async def test_install_from_a_file_heartbeats_and_a_second_install_changes_nothing(
    machine: Machine, served: Served, host_nats: EmbeddedNats, host_nc: NatsClient, device: str
) -> None:
    argv = ["agent", "install", "--device-id", device, "--nats", host_nats.url]
    argv += ["--artifact", served.path_inside(OLD), "--heartbeat-interval", "0.5"]
    async with heartbeats(host_nc, device) as beats:
        first = fleet(machine, *argv)
        assert f"installed version {OLD}" in first.stdout
        assert current(machine) == f"versions/{OLD}"
        assert versions(machine) == [OLD]
        assert machine.run("systemctl", "is-enabled", f"{SERVICE}.service").stdout.strip() == (
            "enabled"
        )
        await eventually(
            lambda: beats.of(version=OLD, role="main"), timeout=60, what="a heartbeat from 1.0.0"
        )
    # The post-commit watch: a pinned launcher for the hooks, and systemd's watchdog armed.
    assert "launcher (post-commit watch hooks)" in first.stdout
    launcher = machine.run("sha256sum", f"{PREFIX}/launcher/agent").stdout.split()[0]
    assert launcher == machine.run("sha256sum", f"{PREFIX}/versions/{OLD}/agent").stdout.split()[0]
    # The unit file leaves room for a slow first start (first_touch_bound); the running agent's
    # first ping tightens it to the liveness bound (WATCHDOG_USEC=, systemd 236 and later).
    unit_text = machine.run("cat", f"/etc/systemd/system/{SERVICE}.service").stdout
    start_bound = first_touch_bound(stale_after(0.5))
    assert f"WatchdogSec={start_bound:g}s" in unit_text, unit_text
    tightened = f"{stale_after(0.5):g}s"

    def watchdog() -> str:
        return machine.run(
            "systemctl", "show", "-p", "WatchdogUSec", "--value", f"{SERVICE}.service"
        ).stdout.strip()

    await eventually(lambda: watchdog() == tightened, timeout=30, what=f"WatchdogUSec {tightened}")
    unit_hash = machine.run("sha256sum", f"/etc/systemd/system/{SERVICE}.service").stdout
    pid = main_pid(machine)
    assert pid > 0

    again = fleet(machine, *argv)
    assert "nothing to change" in again.stdout, again.stdout
    assert main_pid(machine) == pid, "an identical install must not restart the agent"
    assert machine.run("sha256sum", f"/etc/systemd/system/{SERVICE}.service").stdout == unit_hash

    gone = fleet(machine, "agent", "uninstall", "--purge")
    assert f"removed /etc/systemd/system/{SERVICE}.service" in gone.stdout
    assert machine.sh(f"test -e {PREFIX}", check=False).returncode != 0
    assert machine.sh(f"test -e /var/lib/harmony-fleet/{device}", check=False).returncode != 0
    state = machine.run("systemctl", "is-active", f"{SERVICE}.service", check=False).stdout
    assert state.strip() in ("inactive", "unknown")
    assert "nothing to change" in fleet(machine, "agent", "uninstall", "--purge").stdout
