"""``fleet agent install`` / ``uninstall`` and argument passing, against a real systemd."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.core.upgrade.watch import first_touch_bound, stale_after
from tests.helpers import eventually
from tests.systemd.conftest import OLD
from tests.systemd.nspawn import Machine
from tests.systemd.support import (
    DEVICE_PYTHON,
    HERE,
    PREFIX,
    SERVICE,
    FleetNats,
    Served,
    assert_sandboxed,
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
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    creds, ca = fleet_nats.device_creds(machine, device)
    argv = ["agent", "install", "--device-id", device, "--nats", fleet_nats.url]
    argv += ["--nats-creds", creds, "--nats-tls-ca", ca]
    argv += ["--artifact", served.path_inside(OLD), "--heartbeat-interval", "0.5"]
    argv += ["--python", DEVICE_PYTHON]
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


def mode_owner_type(machine: Machine, path: str) -> str:
    return machine.run("stat", "-c", "%a %U %F", path).stdout.strip()


async def test_the_device_secrets_are_root_only_and_the_agent_runs_sandboxed(
    machine: Machine, served: Served, fleet_nats: FleetNats, host_nc: NatsClient, device: str
) -> None:
    """Installed as a person would (creds and CA copied to ``/root`` first), with a password in
    the environment too: what another local user could read, and what the agent could write."""
    creds, ca = fleet_nats.device_creds(machine, device)
    password = 'pw-$"only-in-the-env-file'
    argv = [sys.executable, str(HERE / "fleet_in_container.py"), "agent", "install"]
    argv += ["--device-id", device, "--nats", fleet_nats.url, "--nats-creds", creds]
    argv += ["--nats-tls-ca", ca, "--artifact", served.path_inside(OLD)]
    argv += ["--heartbeat-interval", "0.5", "--python", DEVICE_PYTHON]
    unit = f"{SERVICE}.service"
    async with heartbeats(host_nc, device) as beats:
        machine.sh(f"FLEET_NATS_PASSWORD={shlex.quote(password)} {shlex.join(argv)}")
        await eventually(lambda: beats.of(version=OLD, role="main"), timeout=60, what="beats")

    # What another local user could read.
    unit_file, env_file = f"/etc/systemd/system/{unit}", f"/etc/harmony-fleet/{SERVICE}.env"
    folder = f"/etc/harmony-fleet/{SERVICE}"
    assert mode_owner_type(machine, unit_file) == "644 root regular file"
    assert mode_owner_type(machine, env_file) == "600 root regular file"
    assert mode_owner_type(machine, folder) == "700 root directory"
    assert machine.sh(f"ls -A {folder}").stdout.split() == ["ca.pem", "nats.creds"]
    for name in ("ca.pem", "nats.creds"):
        assert mode_owner_type(machine, f"{folder}/{name}") == "600 root regular file"
    given = machine.run("cat", creds).stdout
    assert machine.run("cat", f"{folder}/nats.creds").stdout == given
    lines = given.splitlines()
    jwt = lines[lines.index("-----BEGIN NATS USER JWT-----") + 1]
    seed = lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1]
    assert jwt.startswith("ey") and seed.startswith("SU"), (jwt[:4], seed[:4])
    text = machine.run("cat", unit_file).stdout
    for secret in (password, jwt, seed, creds, ca):
        assert secret not in text, f"{secret[:20]}... in the world-readable unit"
    assert f'"--nats-creds" "{folder}/nats.creds"' in text
    assert f'"--nats-tls-ca" "{folder}/ca.pem"' in text
    assert re.search(r"://[^\s\"/]*@", text) is None, "no user:password@ in a URL"
    assert "FLEET_NATS_PASSWORD=" in machine.run("cat", env_file).stdout

    # The person deletes what they copied over: the agent runs from the install's copies.
    machine.run("rm", creds, ca)
    async with heartbeats(host_nc, device) as beats:
        before = main_pid(machine)
        machine.run("systemctl", "restart", unit)
        restarted = time.monotonic()
        await eventually(
            lambda: beats.of(version=OLD, role="main", after=restarted), timeout=60, what="beats"
        )
    assert main_pid(machine) != before

    # The sandbox, as systemd applies it and as the kernel holds the running agent.
    assert_sandboxed(machine, unit, device)
    pid = main_pid(machine)
    status = dict(
        line.split(":", 1) for line in machine.run("cat", f"/proc/{pid}/status").stdout.splitlines()
    )
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0, status
    assert status["Seccomp"].strip() == "2", "a system call filter"
    inside = ["nsenter", "-t", str(pid), "-m", "--"]
    for path in ("/usr/harmony-probe", "/etc/harmony-probe", f"{folder}/nats.creds"):
        denied = machine.run(*inside, "touch", path, check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    machine.run("touch", "/root/.harmony-probe")
    hidden = machine.run(*inside, "test", "-e", "/root/.harmony-probe", check=False)
    assert hidden.returncode != 0, "ProtectHome: /root is empty and inaccessible to the agent"
    machine.run("rm", "/root/.harmony-probe")
    for path in (f"{PREFIX}/.probe", f"/var/lib/harmony-fleet/{device}/.probe"):
        machine.run(*inside, "touch", path)
        machine.run("rm", path)

    if machine.sh("command -v systemd-analyze", check=False).returncode == 0:
        bare = "/tmp/unsandboxed.service"
        machine.sh(f"sed '/^# The sandbox/,/^$/d' {unit_file} > {bare}")
        scores = [
            machine.sh(
                f"systemd-analyze security --offline=yes --no-pager {f} | tail -n 1", check=False
            ).stdout.strip()
            for f in (bare, unit_file)
        ]
        print(f"\nsystemd-analyze security: without the sandbox {scores[0]!r}; with {scores[1]!r}")
        numbers = [float(m.group(1)) for s in scores if (m := re.search(r"(\d+\.\d+)", s))]
        if len(numbers) == 2:
            assert numbers[1] < numbers[0], scores
