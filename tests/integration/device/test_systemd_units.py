"""The systemd runner and installer without systemd: names, argument vectors, unit text.

Everything that reaches systemd is built as data, so it can be checked here exactly: the
``systemd-run`` vector (options before ``--``, every ``$`` doubled, hostile values kept as one
argument each), the unit file's ``ExecStart`` quoting, the stop sequence the runner issues, and
how an exit is read back. The systemd tier (``tests/systemd``) runs the same code for real.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.helpers import eventually

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.systemd.install import require_root_and_systemd
from harmony_fleet.adapters.systemd.runner import SystemdRunner
from harmony_fleet.adapters.systemd.systemctl import Result, Systemd, SystemdUnavailable
from harmony_fleet.adapters.systemd.unit_file import (
    InstallSpec,
    read_install_meta,
    render_env,
    render_unit,
)
from harmony_fleet.adapters.systemd.units import (
    candidate_unit,
    escape_run_arg,
    exec_line,
    service_name,
    transient_argv,
)
from harmony_fleet.cli import exit_codes
from harmony_fleet.contracts import UpgradeMarker, device_id
from harmony_fleet.contracts.ids import UpgradeId, Version
from harmony_fleet.core.upgrade.device import CandidateHandle
from harmony_fleet.errors import ConfigError, InvalidMessage, Refused, Timeout

HOSTILE = [
    "$HOME",
    "${PATH}",
    "a $$ b",
    "%n %h",
    "; touch /tmp/pwned",
    "`id`",
    "$(id)",
    "x y",
    "it's",
    '"q"',
    "back\\slash",
    "--property=ExecStartPre=/bin/false",
]


def systemd_unquote(line: str) -> list[str]:
    """How systemd reads an ExecStart= line we wrote (quotes, backslashes, then %% and $$)."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)]


# -- names and vectors -------------------------------------------------------------------------


def test_candidate_unit_is_derived_from_the_upgrade_id_alone() -> None:
    assert (
        candidate_unit("harmony-fleet-agent", "u123")
        == "harmony-fleet-agent-candidate-u123.service"
    )
    assert service_name("agent.service") == "agent"
    with pytest.raises(InvalidMessage):
        candidate_unit("harmony-fleet-agent", "../x")
    for bad in ("", "a b", "a;b", "x/../y", "-x", "a\nb"):
        with pytest.raises(ConfigError):
            service_name(bad)


def test_systemd_run_vector_keeps_every_hostile_value_one_literal_argument() -> None:
    command = ["/usr/bin/python3", "/opt/a/agent", *HOSTILE]
    argv = transient_argv(
        "svc-candidate-u1.service",
        command,
        description="d",
        properties={"Type": "exec", "RemainAfterExit": "yes"},
        pass_env=["FLEET_NATS_PASSWORD"],
    )
    split = argv.index("--")
    options, tail = argv[:split], argv[split + 1 :]
    assert options == [
        "systemd-run",
        "--unit=svc-candidate-u1.service",
        "--description=d",
        "--property=Type=exec",
        "--property=RemainAfterExit=yes",
        "--setenv=FLEET_NATS_PASSWORD",  # copied from the environment: no value on the line
    ]
    assert len(tail) == len(command)
    # systemd turns $$ back into $ and expands nothing else (measured in the systemd tier)
    assert [a.replace("$$", "$") for a in tail] == command
    assert escape_run_arg("$HOME") == "$$HOME"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"properties": {"Exec Start": "x"}}, "property name"),
        ({"properties": {"Description": "a\nExecStartPre=/bin/false"}}, "control character"),
        ({"pass_env": ["A=B"]}, "variable name"),
        ({"description": "line\nbreak"}, "control character"),
    ],
)
def test_systemd_run_vector_refuses_values_that_would_add_settings(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"description": "d", **kwargs}
    with pytest.raises(ConfigError, match=message):
        transient_argv("u.service", ["/bin/true"], **args)  # type: ignore[arg-type]


def test_exec_line_quotes_every_word_so_systemd_reads_back_the_same_vector() -> None:
    argv = ["/usr/bin/python3", *HOSTILE]
    line = exec_line(argv)
    assert systemd_unquote(line) == argv
    assert "$HOME" not in line.replace("$$HOME", "")
    with pytest.raises(ConfigError):
        exec_line(["python3", "x"])  # not absolute: systemd would refuse or search PATH
    with pytest.raises(ConfigError):
        exec_line(["/bin/echo", "a\nExecStartPre=/bin/false"])


# -- the unit file ---------------------------------------------------------------------------


def spec(tmp_path: Path, **kw: object) -> InstallSpec:
    args: dict[str, object] = {
        "device_id": device_id("edge-1"),
        "prefix": tmp_path / "opt hf",
        "state_dir": tmp_path / "state $x",
        "service": "hf-agent",
        "nats_args": ("--nats", "nats://127.0.0.1:4222"),
        "heartbeat_interval_s": 0.5,
        "python": "/usr/bin/python3",
        "unit_dir": tmp_path / "units",
        "env_dir": tmp_path / "env",
        **kw,
    }
    return InstallSpec(**args)  # type: ignore[arg-type]


def unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_unit_runs_current_through_the_launch_spec_and_restarts_forever(tmp_path: Path) -> None:
    s = spec(tmp_path)
    text = render_unit(s)
    (exec_start,) = unit_values(text, "ExecStart")
    argv = systemd_unquote(exec_start)
    prefix, state = str(tmp_path / "opt hf"), str(tmp_path / "state $x")
    assert argv == [
        "/usr/bin/python3",
        f"{prefix}/current/agent",
        *["agent", "run", "--device-id", "edge-1", "--state-dir", state],
        *["--nats", "nats://127.0.0.1:4222", "--heartbeat-interval", "0.5"],
        *["--prefix", prefix, "--executor", "systemd"],
    ]
    assert unit_values(text, "Restart") == ["always"]
    assert unit_values(text, "RestartSec") == ["1s"]
    assert unit_values(text, "StartLimitIntervalSec") == ["0"]
    assert unit_values(text, "WantedBy") == ["multi-user.target"]
    assert unit_values(text, "Environment") == [
        '"FLEET_SERVICE=hf-agent"',
        "FLEET_POST_COMMIT_WATCH=systemd",
        "PYTHONUNBUFFERED=1",
    ]
    assert not unit_values(text, "EnvironmentFile")
    assert render_env(s) is None
    assert render_unit(s) == text, "pure: the same spec renders the same bytes"


def test_the_unit_keeps_the_post_commit_watch_with_a_launcher_not_the_new_version(
    tmp_path: Path,
) -> None:
    s = spec(tmp_path)
    text = render_unit(s)
    prefix, state = str(tmp_path / "opt hf"), str(tmp_path / "state $x")
    for key, hook in (("ExecStartPre", "pre-start"), ("ExecStopPost", "post-stop")):
        (line,) = unit_values(text, key)
        assert line.startswith("-"), "a failing hook must never keep the agent from starting"
        assert systemd_unquote(line[1:]) == [
            "/usr/bin/python3",
            f"{prefix}/launcher/agent",
            *["agent", "watch-hook", hook, "--prefix", prefix, "--state-dir", state],
            *["--service", "hf-agent.service"],
        ]
    # Room for a slow first start (the main tightens it to 4 intervals with its first ping).
    assert unit_values(text, "WatchdogSec") == ["180s"], "at least 3 min, > 12 x 5 s"
    assert unit_values(text, "NotifyAccess") == ["main"]
    slow = render_unit(spec(tmp_path, heartbeat_interval_s=10.0))
    assert unit_values(slow, "WatchdogSec") == ["480s"], "12 x 4 heartbeat intervals"
    assert spec(tmp_path, heartbeat_interval_s=10.0).stale_after_s == 40.0


def test_a_password_goes_to_a_private_env_file_never_into_the_unit(tmp_path: Path) -> None:
    s = spec(tmp_path, secrets={"FLEET_NATS_PASSWORD": 'pa$s"word'})
    text = render_unit(s)
    assert "pa$s" not in text
    assert unit_values(text, "EnvironmentFile") == [str(s.env_path)]
    assert render_env(s) == 'FLEET_NATS_PASSWORD="pa\\$s\\"word"\n'


def test_the_unit_remembers_where_it_installed_for_uninstall(tmp_path: Path) -> None:
    s = spec(tmp_path)
    s.unit_path.parent.mkdir(parents=True)
    s.unit_path.write_text(render_unit(s))
    assert read_install_meta(s.unit_path) == {
        "device_id": "edge-1",
        "prefix": str(s.prefix),
        "state_dir": str(s.state_dir),
    }


# -- the runner's calls, recorded ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ScriptedSystemd(Systemd):
    """Records every vector; ``show`` answers come from ``states`` (one per call, last repeats)."""

    calls: list[list[str]] = field(default_factory=list)
    states: list[dict[str, str]] = field(default_factory=list)
    journal: str = "line 1\nline 2\n"

    async def call(
        self, argv: object, *, check: bool = True, timeout_s: float | None = None
    ) -> Result:
        args = list(argv)  # type: ignore[call-overload]
        self.calls.append(args)
        out = ""
        if "show" in args:
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            out = "".join(f"{k}={v}\n" for k, v in state.items())
        elif args[0] == self.journalctl_bin:
            out = self.journal
        return Result(tuple(args), 0, out, "")

    def verbs(self) -> list[str]:
        return [
            a[0] if a[0] != self.systemctl_bin else a[2]
            for a in self.calls
            if not (a[0] == self.systemctl_bin and a[2] == "show")
        ]


GONE = {"LoadState": "not-found", "MainPID": "0", "ActiveState": "inactive"}
RUNNING = {"LoadState": "loaded", "MainPID": "42", "ActiveState": "active", "SubState": "running"}


@dataclass(frozen=True, kw_only=True)
class StubbornSystemd(ScriptedSystemd):
    """A candidate that ignores SIGTERM and dies on SIGKILL (or, if ``immortal``, never)."""

    immortal: bool = False
    killed: list[str] = field(default_factory=list)

    async def call(
        self, argv: object, *, check: bool = True, timeout_s: float | None = None
    ) -> Result:
        args = list(argv)  # type: ignore[call-overload]
        if "--signal=SIGKILL" in args and not self.immortal:
            self.killed.append("yes")
        if "show" in args and self.killed:
            self.states[:] = [
                {**RUNNING, "MainPID": "0", "ExecMainCode": "2", "ExecMainStatus": "9"}
            ]
        return await super().call(args, check=check, timeout_s=timeout_s)


def runner(tmp_path: Path, sd: ScriptedSystemd) -> SystemdRunner:
    layout = AgentLayout(tmp_path / "prefix")
    home = layout.version_dir("2.0.0")
    home.mkdir(parents=True, exist_ok=True)
    (home / "agent").write_bytes(b"x")
    launch = LaunchSpec(python="/usr/bin/python3", device_id="edge-1", state_dir=tmp_path / "s")
    return SystemdRunner(
        layout,
        launch,
        service="hf",
        systemd=sd,
        poll_s=0.01,
        stop_timeout_s=0.2,
        environ={"FLEET_NATS_PASSWORD": "secret", "HOME": "/root"},
    )


def marker(uid: str = "u77") -> UpgradeMarker:
    return UpgradeMarker(
        upgrade_id=uid,
        device_id="edge-1",
        target_version="2.0.0",
        artifact_url="http://127.0.0.1:9/a",
        sha256="ab" * 32,
        requested_at=time.time(),
    )


async def test_start_candidate_runs_a_transient_unit_named_after_the_upgrade(
    tmp_path: Path,
) -> None:
    sd = ScriptedSystemd(states=[GONE])
    ex = runner(tmp_path, sd)
    handle = await ex.start_candidate(marker())
    assert handle.ref == "hf-candidate-u77.service"
    run = sd.calls[-1]
    assert run[0] == "systemd-run"
    assert "--unit=hf-candidate-u77.service" in run
    assert {"--property=Type=exec", "--property=RemainAfterExit=yes"} <= set(run)
    assert "--setenv=FLEET_NATS_PASSWORD" in run and "--setenv=HOME" not in run
    assert all("secret" not in a for a in run)
    command = run[run.index("--") + 1 :]
    assert command == [
        "/usr/bin/python3",
        str(tmp_path / "prefix" / "versions" / "2.0.0" / "agent"),
        *["agent", "run", "--device-id", "edge-1", "--state-dir", str(tmp_path / "s")],
        *["--role", "candidate", "--upgrade-id", "u77"],
    ]


async def test_start_candidate_is_idempotent_while_the_unit_runs(tmp_path: Path) -> None:
    sd = ScriptedSystemd(states=[RUNNING])
    await runner(tmp_path, sd).start_candidate(marker())
    assert "systemd-run" not in sd.verbs()


async def test_stop_candidate_reads_the_exit_then_removes_the_unit(tmp_path: Path) -> None:
    exited = {**RUNNING, "MainPID": "0", "SubState": "exited", "ExecMainCode": "1"}
    sd = ScriptedSystemd(states=[RUNNING, RUNNING, {**exited, "ExecMainStatus": "0"}, GONE])
    outcome = await runner(tmp_path, sd).stop_candidate(UpgradeId("u77"))
    assert outcome is not None
    assert (outcome.exit_code, outcome.log_tail) == (0, ("line 1", "line 2"))
    assert sd.verbs() == ["kill", "journalctl", "stop", "reset-failed"]
    kill = next(c for c in sd.calls if "kill" in c)
    assert kill[-2:] == ["--", "hf-candidate-u77.service"] and "--signal=SIGTERM" in kill


async def test_a_candidate_ignoring_sigterm_is_killed_and_one_that_survives_is_an_error(
    tmp_path: Path,
) -> None:
    sd = StubbornSystemd(states=[RUNNING])
    outcome = await runner(tmp_path, sd).stop_candidate(UpgradeId("u77"))
    assert outcome is not None and outcome.exit_code is None and "signal 9" in outcome.log_tail[-1]
    assert sd.verbs() == ["kill", "kill", "journalctl", "stop", "reset-failed"]
    immortal = StubbornSystemd(states=[RUNNING], immortal=True)
    with pytest.raises(Timeout, match="still running"):
        await runner(tmp_path, immortal).stop_candidate(UpgradeId("u77"))
    assert "stop" not in immortal.verbs(), "a unit that may still run is not reported as gone"


async def test_stop_candidate_after_a_reboot_finds_nothing(tmp_path: Path) -> None:
    sd = ScriptedSystemd(states=[GONE])
    assert await runner(tmp_path, sd).stop_candidate(UpgradeId("u77")) is None
    assert sd.verbs() == []


async def test_candidate_exit_reports_code_or_signal(tmp_path: Path) -> None:
    crashed = {**RUNNING, "MainPID": "0", "ActiveState": "failed", "ExecMainCode": "1"}
    sd = ScriptedSystemd(states=[RUNNING, {**crashed, "ExecMainStatus": "3"}])
    ex = runner(tmp_path, sd)
    handle = await ex.start_candidate(marker())
    outcome = await ex.candidate_exit(handle)
    assert outcome.exit_code == 3 and outcome.log_tail == ("line 1", "line 2")
    killed = {**crashed, "ExecMainCode": "2", "ExecMainStatus": "9"}
    sd2 = ScriptedSystemd(states=[killed])
    out2 = await runner(tmp_path, sd2).candidate_exit(handle)
    assert out2.exit_code is None and "signal 9" in out2.log_tail[-1]


# -- the commands' guards ----------------------------------------------------------------------


def test_not_root_and_no_systemd_are_one_clear_error_each(tmp_path: Path) -> None:
    with pytest.raises(Refused, match="must run as root"):
        require_root_and_systemd(euid=1000)
    if Systemd.booted():
        pytest.skip("this machine runs systemd")
    with pytest.raises(SystemdUnavailable, match="/run/systemd/system is absent"):
        require_root_and_systemd(euid=0)


def test_cli_install_exit_codes_without_systemd(tmp_path: Path) -> None:
    from harmony_fleet.cli import install
    from harmony_fleet.cli.main import cli

    install.register(cli)
    artifact = tmp_path / "a.pyz"
    artifact.write_bytes(b"x")
    runner = CliRunner()
    both = runner.invoke(
        cli,
        ["agent", "install", "--device-id", "d1", "--artifact", str(artifact), "--artifact-url=x"],
    )
    assert both.exit_code == exit_codes.USAGE
    if Systemd.booted():
        return
    res = runner.invoke(cli, ["agent", "install", "--device-id", "d1", "--artifact", str(artifact)])
    assert res.exit_code == exit_codes.UNAVAILABLE, res.output
    assert res.output.strip().splitlines()[-1].startswith("fleet: error: systemd is not running")
    res = runner.invoke(cli, ["agent", "uninstall"])
    assert res.exit_code == exit_codes.UNAVAILABLE


def test_the_units_nats_flags_have_no_password_and_name_the_installs_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harmony_fleet.cli.install import _unit_nats

    monkeypatch.chdir(tmp_path)
    argv, files = _unit_nats(
        {
            "nats_urls": ("nats://a:4222", "nats://b:4222"),
            "nats_user": "edge",
            "nats_password": "hunter2",
            "nats_creds": "edge.creds",
            "nats_tls_ca": None,
        }
    )
    assert argv == (*("--nats", "nats://a:4222", "--nats", "nats://b:4222", "--nats-user", "edge"),)
    assert files == {"--nats-creds": tmp_path / "edge.creds"}, "absolute: the install copies it"
    s = spec(tmp_path, nats_args=argv, nats_files=files)
    (exec_start,) = unit_values(render_unit(s), "ExecStart")
    words = systemd_unquote(exec_start)
    assert words[words.index("--nats-creds") + 1] == str(s.credentials_dir / "nats.creds")
    assert str(tmp_path / "edge.creds") not in render_unit(s)
    assert "hunter2" not in render_unit(s)


async def test_watching_a_candidate_is_cancellable_and_leaves_no_tool_running(
    tmp_path: Path,
) -> None:
    """The driver cancels ``candidate_exit`` when it stops watching (commit, shutdown): the
    cancellation must go through at once, whatever ``systemctl`` call is in flight."""
    fake = tmp_path / "systemctl"
    pids = tmp_path / "pids"
    fake.write_text(
        f"#!/bin/sh\necho $$ >> {pids}\nexec sleep 30\n"  # a call that never answers
    )
    fake.chmod(0o755)
    ex = runner(tmp_path, ScriptedSystemd(states=[GONE]))
    ex.systemd = Systemd(systemctl_bin=str(fake))
    handle = CandidateHandle(upgrade_id=UpgradeId("u1"), version=Version("2.0.0"), ref="x.service")
    watch = asyncio.ensure_future(ex.candidate_exit(handle))
    await eventually(pids.exists, what="systemctl called")
    watch.cancel()
    await asyncio.wait_for(asyncio.gather(watch, return_exceptions=True), 5)
    assert watch.cancelled()
    (pid,) = map(int, pids.read_text().split())
    assert not Path(f"/proc/{pid}").exists(), "the systemctl child was killed and reaped"
