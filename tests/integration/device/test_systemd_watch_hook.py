"""The systemd unit's post-commit watch without systemd: the hooks on real files, the variables
systemd hands ``ExecStopPost=``, the fast entry that skips the CLI, and the watchdog pings on a
real Unix datagram socket. The same hooks under a real systemd: ``tests/systemd``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.device.notes import FAILURES_FILE, RUN_DIR, read_rollback, read_watch
from harmony_fleet.adapters.systemd.notify import WatchdogNotifier
from harmony_fleet.adapters.systemd.watch_hook import ServiceExit, main, post_stop, pre_start
from harmony_fleet.agent.build import is_watched
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.core.upgrade.effects import WatchPlan
from harmony_fleet.core.upgrade.watch import RollbackNote, WatchReason

OLD, NEW = Version("1.0.0"), Version("2.0.0")
U1 = UpgradeId("u1")

CRASH = {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "3"}
CLEAN = {"SERVICE_RESULT": "success", "EXIT_CODE": "exited", "EXIT_STATUS": "0"}
STOPPED = {"SERVICE_RESULT": "success", "EXIT_CODE": "killed", "EXIT_STATUS": "TERM"}
WATCHDOG = {"SERVICE_RESULT": "watchdog", "EXIT_CODE": "dumped", "EXIT_STATUS": "ABRT"}


@pytest.fixture
def layout(tmp_path: Path) -> AgentLayout:
    lay = AgentLayout(tmp_path / "opt")
    for v in (OLD, NEW):
        lay.version_dir(v).mkdir(parents=True)
        (lay.version_dir(v) / "agent").write_text(v)
    lay.swap_current(NEW)  # the old agent just committed
    return lay


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


async def arm(layout: AgentLayout, state: Path, **plan: object) -> None:
    files = AgentFiles(
        layout, running_version=NEW, run_dir=state / RUN_DIR, stale_after_s=5.0, watched=True
    )
    fields: dict[str, object] = {
        "upgrade_id": U1,
        "previous": OLD,
        "target": NEW,
        "committed_at": 1.0,
        "window_s": 600.0,
        "max_failures": 3,
        **plan,
    }
    await files.arm_watch(WatchPlan(**fields))  # type: ignore[arg-type]


def hook(layout: AgentLayout, state: Path, which: str, env: dict[str, str]) -> int:
    argv = [which, "--prefix", str(layout.prefix), "--state-dir", str(state)]
    return main([*argv, "--service", "hf.service"], environ=env)


@pytest.mark.parametrize(
    ("env", "expected", "failed", "watchdog"),
    [
        (CRASH, ServiceExit(result="exit-code", exit_code=3), True, False),
        (CLEAN, ServiceExit(result="success", exit_code=0), False, False),
        (STOPPED, ServiceExit(result="success", signal="SIGTERM"), False, False),
        (WATCHDOG, ServiceExit(result="watchdog", signal="SIGABRT"), False, True),
        (
            {"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"},
            ServiceExit(result="signal", signal="SIGKILL"),
            True,
            False,
        ),
        (
            {"SERVICE_RESULT": "core-dump", "EXIT_CODE": "dumped", "EXIT_STATUS": "SEGV"},
            ServiceExit(result="core-dump", signal="SIGSEGV"),
            True,
            False,
        ),
        ({"SERVICE_RESULT": "oom-kill"}, ServiceExit(result="oom-kill"), True, False),
        ({"SERVICE_RESULT": "timeout"}, ServiceExit(result="timeout"), False, False),
        (
            {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "x"},
            ServiceExit(result="exit-code"),
            True,
            False,
        ),
    ],
)
def test_what_systemd_says_about_an_exit(
    env: dict[str, str], expected: ServiceExit, failed: bool, watchdog: bool
) -> None:
    ended = ServiceExit.from_environ(env)
    assert ended == expected
    assert (ended.failed, ended.watchdog) == (failed, watchdog)


async def test_three_crashes_of_the_watched_version_roll_back_with_codes_and_journal(
    layout: AgentLayout, state: Path
) -> None:
    await arm(layout, state)
    run_dir = state / RUN_DIR

    def tail() -> tuple[str, ...]:
        return ("starting 2.0.0", "build fault: crashing")

    assert post_stop(layout, run_dir, ServiceExit.from_environ(CRASH), log_tail=tail) is None
    assert post_stop(layout, run_dir, ServiceExit.from_environ(STOPPED), log_tail=tail) is None
    assert post_stop(layout, run_dir, ServiceExit.from_environ(CRASH), log_tail=tail) is None
    assert layout.current_version() == NEW, "two failures are not a crash loop yet"
    assert (run_dir / FAILURES_FILE).exists(), (
        "the count lives in a file: each hook is a new process"
    )

    done = post_stop(layout, run_dir, ServiceExit.from_environ(CRASH), log_tail=tail)

    assert isinstance(done, RollbackNote)
    assert done.reason is WatchReason.CRASH_LOOP
    assert done.exit_codes == (3, 3, 3)
    assert done.log_tail == ("starting 2.0.0", "build fault: crashing")
    assert layout.current_version() == OLD
    assert read_rollback(run_dir) == done, "the note the previous version's agent reads"
    # The previous version's runs are not on trial: its exits count for nothing.
    assert post_stop(layout, run_dir, ServiceExit.from_environ(CRASH)) is None


async def test_the_watchdog_inside_the_window_rolls_back_at_once(
    layout: AgentLayout, state: Path
) -> None:
    await arm(layout, state)
    done = post_stop(layout, state / RUN_DIR, ServiceExit.from_environ(WATCHDOG))
    assert done is not None and done.reason is WatchReason.NO_HEARTBEAT
    assert "watchdog" in done.detail and "SIGABRT" in done.detail
    assert done.exit_codes == (None,)
    assert layout.current_version() == OLD


async def test_without_a_watch_every_exit_is_an_ordinary_restart(
    layout: AgentLayout, state: Path
) -> None:
    run_dir = state / RUN_DIR
    for env in (CRASH, WATCHDOG, CRASH, CRASH):
        assert post_stop(layout, run_dir, ServiceExit.from_environ(env)) is None
    assert layout.current_version() == NEW
    assert not run_dir.exists() or not any(run_dir.iterdir())


async def test_the_handover_exit_and_orderly_stops_are_never_counted(
    layout: AgentLayout, state: Path
) -> None:
    await arm(layout, state, max_failures=1)
    for env in (CLEAN, STOPPED, {"SERVICE_RESULT": "timeout"}):
        assert hook(layout, state, "post-stop", env) == 0
    assert layout.current_version() == NEW
    assert not (state / RUN_DIR / FAILURES_FILE).exists()


async def test_pre_start_finishes_a_rollback_interrupted_before_its_swap(
    layout: AgentLayout, state: Path
) -> None:
    await arm(layout, state, max_failures=1)
    run_dir = state / RUN_DIR
    post_stop(layout, run_dir, ServiceExit.from_environ(CRASH))
    layout.swap_current(NEW)  # as if power went between the note and the swap
    assert read_watch(run_dir) is not None

    pre_start(layout, run_dir)

    assert layout.current_version() == OLD
    assert hook(layout, state, "pre-start", {}) == 0, "and a second start changes nothing"
    assert layout.current_version() == OLD


def test_outside_a_unit_the_hook_says_so_in_one_line(
    layout: AgentLayout, state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hook(layout, state, "post-stop", {}) == 2
    err = capsys.readouterr().err
    assert "SERVICE_RESULT is not set" in err and "Traceback" not in err


def test_the_entry_runs_the_hook_without_loading_the_cli(layout: AgentLayout, state: Path) -> None:
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('loaded:', sorted(m for m in ('click', 'rich',"
        " 'harmony_fleet.cli.main', 'httpx', 'nats') if m in sys.modules)))\n"
        "from harmony_fleet.cli.entry import main\n"
        "main()\n"
    )
    argv = ["agent", "watch-hook", "post-stop", "--prefix", str(layout.prefix)]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **CRASH},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"


def test_watchdog_pings_reach_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"}
        notifier = WatchdogNotifier.from_environ({**env, "WATCHDOG_PID": str(os.getpid())})
        assert notifier is not None and notifier.interval_s == 30.0
        assert notifier.ping() and notifier.ping()
        assert server.recv(64) == b"WATCHDOG=1"
        assert server.recv(64) == b"WATCHDOG=1"
        notifier.close()


def test_the_first_ping_tightens_the_generous_start_watchdog(tmp_path: Path) -> None:
    """Slow is not broken: the unit's WatchdogSec leaves room for a slow start; once up, the
    main asks systemd for its liveness bound, once."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "180000000"}
        notifier = WatchdogNotifier.from_environ(env, tighten_to_s=5.0)
        assert notifier is not None and notifier.ping() and notifier.ping()
        assert server.recv(64) == b"WATCHDOG=1\nWATCHDOG_USEC=5000000"
        assert server.recv(64) == b"WATCHDOG=1"
        notifier.close()
        # never "tightened" to something longer than what systemd asked for
        loose = WatchdogNotifier.from_environ(env, tighten_to_s=600.0)
        assert loose is not None and loose.ping()
        assert server.recv(64) == b"WATCHDOG=1"
        loose.close()


def test_abstract_notify_sockets_are_addressed_with_a_nul_byte() -> None:
    name = f"hf-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(b"\0" + name.encode())
        server.settimeout(5)
        notifier = WatchdogNotifier.from_environ(
            {"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "1"}
        )
        assert notifier is not None and notifier.ping()
        assert server.recv(64) == b"WATCHDOG=1"
        notifier.close()


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"NOTIFY_SOCKET": "/run/x"},  # notify socket but no watchdog asked for
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"},  # not us
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "soon"},
        {"NOTIFY_SOCKET": "relative", "WATCHDOG_USEC": "1000"},
    ],
)
def test_no_watchdog_unless_systemd_asked_this_process(env: dict[str, str]) -> None:
    assert WatchdogNotifier.from_environ(env, pid=4242) is None


def test_a_missing_socket_costs_a_count_not_an_exception(tmp_path: Path) -> None:
    notifier = WatchdogNotifier(str(tmp_path / "gone"), 1.0)
    assert not notifier.ping() and not notifier.ping()
    assert notifier.failed == 2
    notifier.close()


def test_the_watch_is_held_only_where_a_launcher_keeps_it() -> None:
    assert is_watched("process", {})
    assert is_watched("systemd", {"FLEET_POST_COMMIT_WATCH": "systemd"})
    assert not is_watched("systemd", {}), "a hand-written unit without the hooks"


async def test_a_launcher_older_than_the_agent_still_reads_its_notes(
    layout: AgentLayout, state: Path
) -> None:
    """Upgrades never replace the launcher: a note from a newer agent, with a field this code
    does not know, must still be read (and acted on)."""
    await arm(layout, state, max_failures=1)
    path = state / RUN_DIR / "post-commit.json"
    path.write_bytes(path.read_bytes()[:-1] + b',"added_in_a_later_version":{"x":1}}')
    note = read_watch(state / RUN_DIR)
    assert note is not None and note.target == NEW
    done = post_stop(layout, state / RUN_DIR, ServiceExit.from_environ(CRASH))
    assert done is not None and layout.current_version() == OLD
