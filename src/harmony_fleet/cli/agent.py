"""``fleet agent run``: the device agent (``fleet agent install`` lives in ``cli/install.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import click

from harmony_fleet._version import BUILD_FAULTS
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.agent.build import build_agent
from harmony_fleet.agent.config import AgentConfig, default_state_dir
from harmony_fleet.agent.faults import parse_faults
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.agent.selftest import self_test
from harmony_fleet.cli._common import (
    build_nats_options,
    install_stop_signals,
    keep_versions_option,
    log_options,
    nats_argv,
    nats_options,
    setup_logging,
)
from harmony_fleet.cli.artifact_flags import artifact_access, artifact_argv, artifact_options
from harmony_fleet.cli.logs import enable_log_shipping_from_flags, log_shipping_options
from harmony_fleet.contracts import Role, device_id, subjects, upgrade_id


def parse_labels(values: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


@click.group("agent")
def agent_group() -> None:
    """The device agent."""


@agent_group.command("run")
@click.option("--device-id", "device", required=True, envvar="FLEET_DEVICE_ID", show_envvar=True)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FLEET_STATE_DIR",
    help="Where the agent keeps its state. [default: /var/lib/harmony-fleet/DEVICE as root]",
)
@click.option(
    "--heartbeat-interval",
    type=float,
    default=5.0,
    show_default=True,
    envvar="FLEET_HEARTBEAT_INTERVAL",
    help="Seconds between heartbeats (each one jittered by ±10%).",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Device label.")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default=Role.MAIN.value, hidden=True
)
@click.option("--upgrade-id", "upgrade", default=None, hidden=True)
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FLEET_PREFIX",
    help="Install prefix (versions/, current) that lets the agent upgrade itself.",
)
@click.option(
    "--executor",
    type=click.Choice(["process", "systemd"]),
    default="process",
    show_default=True,
    envvar="FLEET_EXECUTOR",
    help="How upgrade candidates are started.",
)
@click.option(
    "--service",
    default="harmony-fleet-agent",
    show_default=True,
    envvar="FLEET_SERVICE",
    show_envvar=True,
    help="The systemd service this agent runs as (with --executor systemd).",
)
@click.option(
    "--trust-root",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="FLEET_TRUST_ROOT",
    help="The release manager's root.json: pinned in the state dir, every upgrade is verified "
    "against the signed releases it roots (fleet agent install pins it once).",
)
@click.option(
    "--release-mirror",
    metavar="URL",
    envvar="FLEET_RELEASE_MIRROR",
    help="HTTPS base URL of the signed repository (metadata/, targets/) instead of NATS.",
)
@keep_versions_option(envvar="FLEET_KEEP_VERSIONS")
@artifact_options
@click.option("--self-test", is_flag=True, help="Check that this artifact can run here, then exit.")
@click.option("--self-test-timeout", type=float, default=10.0, show_default=True)
@nats_options
@log_options
@log_shipping_options
def run_cmd(
    device: str,
    state_dir: Path | None,
    heartbeat_interval: float,
    labels: tuple[str, ...],
    role: str,
    upgrade: str | None,
    prefix: Path | None,
    executor: str,
    service: str,
    trust_root: Path | None,
    release_mirror: str | None,
    keep_versions: int,
    allow_http_artifacts: bool,
    artifact_ca: Path | None,
    self_test: bool,
    self_test_timeout: float,
    log_json: bool,
    log_level: str,
    **nats_kwargs: Any,
) -> None:
    """Run the agent for one device until SIGTERM or SIGINT."""
    setup_logging(log_json, log_level)
    dev = device_id(device)
    config = AgentConfig(
        device_id=dev,
        state_dir=state_dir or default_state_dir(dev),
        # Replies to this device land under its own prefix: its credentials allow no other.
        nats=dataclasses.replace(
            build_nats_options(**nats_kwargs), inbox_prefix=subjects.inbox_prefix(dev)
        ),
        heartbeat_interval_s=heartbeat_interval,
        role=Role(role),
        upgrade_id=upgrade_id(upgrade) if upgrade else None,
        labels=parse_labels(labels),
        install_prefix=prefix,
        executor=executor,
        service=service,
        trust_root=trust_root,
        release_mirror=release_mirror,
        keep_versions=keep_versions,
        artifacts=artifact_access(allow_http_artifacts, artifact_ca),
    )
    faults = parse_faults(BUILD_FAULTS)
    if self_test:
        raise SystemExit(asyncio.run(_self_test(config, faults, self_test_timeout)))
    launch = LaunchSpec(
        device_id=config.device_id,
        state_dir=config.state_dir,
        nats_args=nats_argv(**nats_kwargs),
        extra_args=tuple(
            ["--heartbeat-interval", str(heartbeat_interval), "--executor", executor]
            + (["--prefix", str(prefix)] if prefix else [])
            + [a for label in labels for a in ("--label", label)]
            + (["--release-mirror", release_mirror] if release_mirror else [])
            + list(artifact_argv(allow_http_artifacts, artifact_ca))
            + (["--log-json"] if log_json else [])
        ),
    )
    agent = build_agent(config, faults=faults, launch=launch)
    enable_log_shipping_from_flags(agent, nats_kwargs)  # flags from @log_shipping_options
    raise SystemExit(asyncio.run(_run(agent)))


async def _self_test(config: AgentConfig, faults: Any, limit_s: float) -> int:
    return await self_test(config, faults=faults, timeout_s=limit_s)


async def _run(agent: Agent) -> int:
    stop = agent.stop
    install_stop_signals(stop)
    return await agent.run()


def register(group: click.Group) -> None:
    group.add_command(agent_group)
