"""A device whose clock disagrees with the operator's (ADR-022, invariant 9 of the architecture:
no decision depends on the device's clock). Real agent processes from real artifacts, run with
libfaketime (Debian's ``faketime``) behind :meth:`LocalFleet.add_device`'s ``command_prefix``:
the device's launcher, its main agent and the candidates all see the shifted clock; the test,
the operator process and NATS (a static Go binary libfaketime cannot reach) keep the real one.

* A clock 10 minutes ahead or behind: a full upgrade commits and succeeds, and an offline/online
  cycle (device stopped, shown offline by the operator, started, online, answering a ping).
* A 10-minute step of the device's wall clock, forward or back, inside the post-commit watch
  window (an NTP correction after boot on a board without a real-time clock) must not roll the
  healthy new version back, nor move the window's end. The step is modelled as the kernel makes
  it: ``CLOCK_REALTIME`` jumps, ``CLOCK_MONOTONIC`` does not. libfaketime reads the offset from a
  file on every call (``FAKETIME_TIMESTAMP_FILE``, ``FAKETIME_NO_CACHE=1``) and leaves the
  monotonic clock alone (``FAKETIME_DONT_FAKE_MONOTONIC=1``). One difference from a real step:
  a file's modification time is set by the real kernel, so after the step every ``mtime`` the
  device reads stays 10 minutes off its wall clock (a real step skews only the mtimes written
  before it): a launcher that judged liveness by wall clock minus ``mtime`` fails here for as
  long as the window lasts, not once.

Without ``faketime`` these tests skip with the reason, except under CI (``CI`` set), where they
fail: ``.ci/run`` installs it.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.commands import CommandsClient
from harmony_fleet.contracts import Role, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LocalFleet
from tests.e2e.support import DEV, P, invariants, reaches
from tests.helpers import eventually

TEN_MINUTES = 600.0
#: The watch window of the step tests: long enough to step inside it and see what follows.
WATCH_S = 20.0
STEPPED = UpgradeTimeouts(self_test_s=30, cutover_s=15, hold_s=60, watch_s=WATCH_S)
QUICK = UpgradeTimeouts(self_test_s=30, cutover_s=15, hold_s=60, watch_s=2)


def _tool_missing(what: str) -> None:
    reason = f"{what}: install Debian's faketime (apt-get install faketime)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def faketime() -> str:
    path = shutil.which("faketime")
    if path is None:
        _tool_missing("faketime is not installed")
    assert path is not None
    return path


@pytest.fixture
def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        _tool_missing("libfaketime.so.1 is not installed")
    return found[0]


async def _main_on(fleet: LocalFleet, version: str, *, timeout: float = 60) -> None:
    def beats() -> bool:
        last = fleet.monitor.devices.get(DEV)
        hb = last.last if last is not None else None
        return hb is not None and hb.agent_version == version and hb.role is Role.MAIN

    await eventually(beats, timeout=timeout, what=f"{DEV} heartbeating as main on {version}")


def _device_clock_offset(fleet: LocalFleet) -> float:
    """How far the device's clock is from ours, from its last heartbeat's ``sent_at``."""
    hb = fleet.monitor.devices[DEV].last
    assert hb is not None
    return hb.sent_at - time.time()


async def _clock_is_off_by(fleet: LocalFleet, offset: float) -> None:
    await eventually(
        lambda: abs(_device_clock_offset(fleet) - offset) < 30,
        timeout=10,
        what=f"the device's heartbeats stamped {offset:+.0f} s off (libfaketime took effect)",
    )


@pytest.mark.parametrize("shift", ["+10m", "-10m"])
async def test_an_upgrade_commits_and_succeeds_with_the_device_clock_off(
    fleet: LocalFleet, faketime: str, shift: str
) -> None:
    await fleet.add_device(DEV, "1.0.0", command_prefix=(faketime, "-f", shift))
    await _main_on(fleet, "1.0.0")
    await _clock_is_off_by(fleet, TEN_MINUTES if shift.startswith("+") else -TEN_MINUTES)
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=QUICK)
    committed = await reaches(fleet, marker, P.COMMITTED, P.SUCCEEDED, P.ROLLED_BACK, P.FAILED)
    assert committed.phase in (P.COMMITTED, P.SUCCEEDED), (
        committed.phase,
        committed.error_code,
        committed.error_detail,
    )
    done = await reaches(fleet, marker, P.SUCCEEDED, P.ROLLED_BACK, P.FAILED)
    assert done.phase is P.SUCCEEDED, (done.phase, done.error_code, done.error_detail)
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)


@pytest.mark.parametrize("shift", ["+10m", "-10m"])
async def test_offline_and_online_again_with_the_device_clock_off(
    fleet: LocalFleet, faketime: str, shift: str
) -> None:
    device = await fleet.add_device(DEV, "1.0.0", command_prefix=(faketime, "-f", shift))
    await _main_on(fleet, "1.0.0")
    await _clock_is_off_by(fleet, TEN_MINUTES if shift.startswith("+") else -TEN_MINUTES)

    async def online() -> bool | None:
        record = await fleet.record(DEV)
        return None if record is None else record.online

    await eventually(online, timeout=30, what="the operator shows the device online")
    await device.stop()
    assert not fleet.agent_processes(DEV)

    async def offline() -> bool:
        return (await online()) is False

    await eventually(offline, timeout=30, what="the operator shows the stopped device offline")
    await device.start()
    await _main_on(fleet, "1.0.0")
    await eventually(online, timeout=30, what="the operator shows the device online again")
    assert fleet.nc is not None
    reply = await CommandsClient(fleet.nc).ping(DEV, timeout_s=5)
    assert reply.ok, reply


@pytest.mark.parametrize("step", ["+10m", "-10m"])
async def test_a_wall_clock_step_in_the_watch_window_does_not_roll_a_good_version_back(
    fleet: LocalFleet, libfaketime: str, tmp_path: Path, step: str
) -> None:
    offset_file = tmp_path / "device-clock"
    offset_file.write_text("+0\n")
    prefix = (
        "env",
        f"LD_PRELOAD={libfaketime}",
        f"FAKETIME_TIMESTAMP_FILE={offset_file}",
        "FAKETIME_NO_CACHE=1",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
    )
    await fleet.add_device(DEV, "1.0.0", command_prefix=prefix)
    await _main_on(fleet, "1.0.0")
    marker = await fleet.request_upgrade(DEV, "2.0.0", timeouts=STEPPED)
    committed = await reaches(fleet, marker, P.COMMITTED, P.SUCCEEDED, P.ROLLED_BACK, P.FAILED)
    assert committed.phase is P.COMMITTED, (committed.phase, committed.error_detail)
    committed_seen = time.monotonic()
    await _main_on(fleet, "2.0.0")
    offset_file.write_text(f"{step}\n")  # the device's wall clock jumps; its monotonic does not
    await _clock_is_off_by(fleet, TEN_MINUTES if step.startswith("+") else -TEN_MINUTES)
    done = await reaches(fleet, marker, P.SUCCEEDED, P.ROLLED_BACK, P.FAILED, timeout=WATCH_S + 60)
    assert done.phase is P.SUCCEEDED, (done.phase, done.error_code, done.error_detail)
    # The window kept its length: the step neither cut it short nor stretched it.
    lasted = time.monotonic() - committed_seen
    assert lasted >= WATCH_S - 3, f"the watch ended {lasted:.1f} s after the commit"
    await invariants(fleet, marker, current="2.0.0", phase=P.SUCCEEDED)
