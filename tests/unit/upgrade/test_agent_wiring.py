"""The agent's small part in the post-commit watch: the liveness file, the build fault that
stops heartbeats, and how many versions garbage collection keeps."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.agent.build import build_agent
from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.faults import Faults, parse_faults
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.agent.upgrade import UpgradeDriver
from harmony_fleet.contracts import Role, device_id, upgrade_id
from harmony_fleet.errors import ConfigError


def agent(tmp_path: Path, *, role: Role = Role.MAIN, faults: Faults | None = None) -> Agent:
    config = AgentConfig(
        device_id=device_id("dev-1"),
        state_dir=tmp_path / "state",
        role=role,
        upgrade_id=upgrade_id("u1") if role is Role.CANDIDATE else None,
    )
    return Agent(config, faults=faults or Faults())


def test_the_liveness_file_is_touched_and_its_folder_made(tmp_path: Path) -> None:
    a = agent(tmp_path)
    a.touch_alive()  # no file configured: nothing happens, nothing raises
    a.liveness_file = tmp_path / "state" / "run" / "main.alive"
    before = time.time() - 1
    a.touch_alive()
    assert a.liveness_file.stat().st_mtime >= before


def test_the_stop_heartbeat_fault_is_parsed_and_applies_to_the_main_only(tmp_path: Path) -> None:
    faults = parse_faults(("stop-heartbeat-as-main-after=2",))
    assert faults.stop_heartbeat_as_main_after_s == 2.0
    main = agent(tmp_path, faults=faults)
    assert not main._heartbeat_fault()  # not yet: 2 s after start
    main.started -= 3
    assert main._heartbeat_fault()
    candidate = agent(tmp_path, role=Role.CANDIDATE, faults=faults)
    candidate.started -= 3
    assert not candidate._heartbeat_fault()
    with pytest.raises(ConfigError):
        parse_faults(("stop-heartbeat-as-main-after=soon",))


@pytest.mark.parametrize("bad", [1, 0, -3])
def test_keep_versions_never_below_the_running_and_the_previous(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ConfigError, match="--keep-versions must be at least 2"):
        AgentConfig(device_id=device_id("d1"), state_dir=tmp_path, keep_versions=bad)


def test_keep_versions_reaches_the_driver(tmp_path: Path) -> None:
    config = AgentConfig(
        device_id=device_id("d1"),
        state_dir=tmp_path,
        install_prefix=tmp_path / "opt",
        keep_versions=4,
    )
    built = build_agent(
        config,
        faults=parse_faults(()),
        launch=LaunchSpec(device_id=config.device_id, state_dir=tmp_path),
    )
    driver = built.commands.stop_handler
    assert isinstance(driver, UpgradeDriver)
    assert driver.keep_versions == 4
    # Everything is handed to Agent(...) when it is made, nothing set on it afterwards.
    assert driver.instance_id == built.instance_id
    assert built.liveness_file == tmp_path / "run" / "main.alive"


def test_an_agent_without_a_prefix_has_no_upgrade_side(tmp_path: Path) -> None:
    config = AgentConfig(device_id=device_id("d1"), state_dir=tmp_path)
    built = build_agent(config, faults=parse_faults(()))
    assert built.commands.stop_handler is None and built.liveness_file is None


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--keep-versions", "1"], {}, "1 is not in the range x>=2"),
        ([], {"FLEET_KEEP_VERSIONS": "two"}, "'two' is not a valid integer"),
    ],
)
def test_a_bad_keep_versions_is_a_usage_error_naming_the_flag(
    args: list[str], env: dict[str, str], says: str
) -> None:
    from click.testing import CliRunner

    from harmony_fleet.cli.main import cli

    result = CliRunner().invoke(cli, ["agent", "run", "--device-id", "d1", *args], env=env)
    assert result.exit_code == 2
    assert "--keep-versions" in result.output and says in result.output
