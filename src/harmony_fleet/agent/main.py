"""The agent's own entry: ``fleet agent run``, ``fleet-agent``, ``python -m harmony_fleet.agent``.

An idle agent should cost a device what a bare NATS client costs it (docs/agent.md, "Footprint"),
so this entry parses its flags with the standard library's ``argparse`` and imports only what the
agent runs: not click, not rich, not the CLI's other commands (the whole ``fleet`` CLI is ~15 MB
of memory and most of a second of start on a small board). ``fleet``'s entry
(``cli.entry``) sends ``agent run …`` here before it loads the CLI, so the systemd unit, the
supervisor and candidates, which all start ``<artifact> agent run …`` (``LaunchSpec``), get this
path; the click command ``fleet agent run`` hands its arguments here too. The flags, their
environment variables and their defaults are those of docs/agent.md.

nats-py imports aiohttp, for its websocket transport, whenever aiohttp is installed (kopf brings it
into an operator's environment): ~10 MB and a tenth of a second the agent has no use for, since it
speaks ``tls://`` and ``nats://`` only and its artifact carries no aiohttp. So before anything
imports nats, importing this module marks aiohttp as absent for this process (``sys.modules`` set
to None: Python's documented way to make an import fail); nothing else in the process imports it.
"""

# ruff: noqa: E402 (aiohttp is marked absent before the imports that would load it)
from __future__ import annotations

import sys

sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harmony_fleet import logging_setup
from harmony_fleet._version import BUILD_FAULTS
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.http.urls import ALLOW_HTTP_FLAG, artifact_access, artifact_argv
from harmony_fleet.adapters.nats.connection import DEFAULT_URL
from harmony_fleet.adapters.nats.flags import build_nats_options, nats_argv
from harmony_fleet.agent.config import AgentConfig, default_state_dir
from harmony_fleet.agent.faults import Faults, parse_faults
from harmony_fleet.agent.logs import ShipConfig, enable_log_shipping
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import Role, device_id, subjects, upgrade_id
from harmony_fleet.errors import ConfigError, FleetError, InvalidMessage

log = logging.getLogger(__name__)

#: Exit code of a bad flag or value (argparse's, click's, ``fleet``'s).
USAGE = 2
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_NATS_FLAGS = ("user", "creds", "tls_ca", "tls_cert", "tls_key")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is not in the range x>={low}")
        return value

    return parse


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file {text!r} does not exist")
    return path


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    """``--label KEY=VALUE`` (repeated) as a dict; ConfigError naming the flag otherwise."""
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label: {item!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


def parser(prog: str = "fleet agent run") -> argparse.ArgumentParser:
    """Every flag of ``fleet agent run`` (docs/agent.md), defaults from the environment."""
    p = argparse.ArgumentParser(
        prog=prog, description="Run the agent for one device until SIGTERM or SIGINT."
    )
    add = p.add_argument
    hidden = argparse.SUPPRESS
    add("--device-id", dest="device", default=_env("FLEET_DEVICE_ID"), help="[FLEET_DEVICE_ID]")
    add(
        "--state-dir",
        type=Path,
        default=_env("FLEET_STATE_DIR"),
        help="where the agent keeps its state [default: /var/lib/harmony-fleet/DEVICE as root]",
    )
    add(
        "--heartbeat-interval",
        type=float,
        default=_env("FLEET_HEARTBEAT_INTERVAL") or 5.0,
        help="seconds between heartbeats, each jittered by ±10%% [default: 5]",
    )
    add(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="device label (repeatable)",
    )
    add("--role", choices=[r.value for r in Role], default=Role.MAIN.value, help=hidden)
    add("--upgrade-id", help=hidden)
    add(
        "--prefix",
        type=Path,
        default=_env("FLEET_PREFIX"),
        help="install prefix (versions/, current) that lets the agent upgrade itself",
    )
    add(
        "--executor",
        choices=["process", "systemd"],
        default=_env("FLEET_EXECUTOR") or "process",
        help="how upgrade candidates are started",
    )
    add(
        "--service",
        default=_env("FLEET_SERVICE") or "harmony-fleet-agent",
        help="the systemd service this agent runs as (with --executor systemd)",
    )
    add(
        "--trust-root",
        type=_existing_file,
        default=_env("FLEET_TRUST_ROOT"),
        help="the release manager's root.json, pinned in the state dir",
    )
    add(
        "--release-mirror",
        metavar="URL",
        default=_env("FLEET_RELEASE_MIRROR"),
        help="HTTPS base URL of the signed repository instead of NATS",
    )
    add(
        "--keep-versions",
        type=_int_at_least(2),
        default=_env("FLEET_KEEP_VERSIONS") or 2,
        help="versions kept on disk after a successful upgrade [default: 2]",
    )
    add(
        ALLOW_HTTP_FLAG,
        action="store_true",
        default=_env_flag("FLEET_ALLOW_HTTP_ARTIFACTS"),
        help="take plain http artifact URLs from any host",
    )
    add(
        "--artifact-ca",
        type=_existing_file,
        default=_env("FLEET_ARTIFACT_CA"),
        help="a PEM CA bundle trusted for https artifact servers",
    )
    add("--self-test", action="store_true", help="check this artifact can run here, then exit")
    add("--self-test-timeout", type=float, default=10.0)
    add(
        "--nats",
        dest="nats_urls",
        action="append",
        metavar="URL",
        help=f"NATS server URL, repeatable [FLEET_NATS_URL; default: the context's, else "
        f"{DEFAULT_URL}]",
    )
    for name in _NATS_FLAGS:
        flag = "--nats-" + name.replace("_", "-")
        add(flag, dest=f"nats_{name}", default=_env(f"FLEET_NATS_{name.upper()}"))
    add("--nats-password", help="refused: set FLEET_NATS_PASSWORD (a command line is public)")
    add(
        "--insecure",
        dest="nats_insecure",
        action="store_true",
        default=_env_flag("FLEET_NATS_INSECURE"),
        help="allow plain nats:// to another host",
    )
    add("--log-json", action="store_true", default=_env_flag("FLEET_LOG_JSON"))
    add(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=_env("FLEET_LOG_LEVEL") or "INFO",
    )
    add(
        "--ship-logs",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("FLEET_SHIP_LOGS", "1").strip().lower() in _TRUE | {""},
        help="publish this agent's log (and --journal-unit journals) to NATS [default: on]",
    )
    add("--journal-unit", dest="journal_units", action="append", default=[], metavar="UNIT")
    add("--log-rate", type=float, default=ShipConfig.rate)
    add("--log-burst", type=float, default=ShipConfig.burst)
    add("--log-buffer", type=int, default=ShipConfig.buffer_lines)
    add("--log-report-interval", type=float, default=ShipConfig.report_interval_s)
    add("--journalctl", default=_env("FLEET_JOURNALCTL") or "journalctl", help=hidden)
    return p  # fmt: skip


def nats_values(args: argparse.Namespace) -> dict[str, Any]:
    """The NATS flags as :func:`build_nats_options` and :func:`nats_argv` take them."""
    values = {f"nats_{name}": getattr(args, f"nats_{name}") for name in _NATS_FLAGS}
    return {
        **values,
        "nats_urls": tuple(args.nats_urls or os.environ.get("FLEET_NATS_URL", "").split()),
        "nats_password": _env("FLEET_NATS_PASSWORD"),
        "nats_insecure": args.nats_insecure,
    }


def config_from(args: argparse.Namespace) -> AgentConfig:
    dev = device_id(args.device)
    return AgentConfig(
        device_id=dev,
        state_dir=args.state_dir or default_state_dir(dev),
        # Replies to this device land under its own prefix: its credentials allow no other.
        nats=dataclasses.replace(
            build_nats_options(**nats_values(args)), inbox_prefix=subjects.inbox_prefix(dev)
        ),
        heartbeat_interval_s=args.heartbeat_interval,
        role=Role(args.role),
        upgrade_id=upgrade_id(args.upgrade_id) if args.upgrade_id else None,
        labels=parse_labels(args.labels),
        install_prefix=args.prefix,
        executor=args.executor,
        service=args.service,
        trust_root=args.trust_root,
        release_mirror=args.release_mirror,
        keep_versions=args.keep_versions,
        artifacts=artifact_access(args.allow_http_artifacts, args.artifact_ca),
    )


def launch_from(args: argparse.Namespace, config: AgentConfig) -> LaunchSpec:
    """How this agent's candidates (and, after a commit, the next main) are started: with this
    process's own flags (``adapters.device.launch``)."""
    extra = ["--heartbeat-interval", str(args.heartbeat_interval), "--executor", args.executor]
    extra += ["--prefix", str(args.prefix)] if args.prefix else []
    extra += [a for label in args.labels for a in ("--label", label)]
    extra += ["--release-mirror", args.release_mirror] if args.release_mirror else []
    extra += artifact_argv(args.allow_http_artifacts, args.artifact_ca)
    extra += ["--log-json"] if args.log_json else []
    return LaunchSpec(
        device_id=config.device_id,
        state_dir=config.state_dir,
        nats_args=nats_argv(**nats_values(args)),
        extra_args=tuple(extra),
    )


def ship_config(args: argparse.Namespace) -> ShipConfig:
    return ShipConfig(
        enabled=args.ship_logs,
        rate=args.log_rate,
        burst=args.log_burst,
        buffer_lines=args.log_buffer,
        report_interval_s=args.log_report_interval,
        journal_units=tuple(args.journal_units),
        journalctl=args.journalctl,
    )


async def _run(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop.set)
    return await agent.run()


async def _self_test(config: AgentConfig, faults: Faults, limit_s: float) -> int:
    from harmony_fleet.agent.selftest import self_test  # noqa: PLC0415 (only with --self-test)

    return await self_test(config, faults=faults, timeout_s=limit_s)


def make_agent(args: argparse.Namespace, config: AgentConfig, faults: Faults) -> Agent:
    """The agent for ``config``. Only a main with ``--prefix`` upgrades itself: the upgrade's
    driver, device files and signed releases (``agent.build``) are imported for it alone, so
    that a candidate, which an upgrade waits for, starts without them."""
    if config.install_prefix is None or config.role is not Role.MAIN:
        return Agent(config, faults=faults)
    from harmony_fleet.agent.build import build_agent  # noqa: PLC0415 (an upgradable main only)

    return build_agent(config, faults=faults, launch=launch_from(args, config))


def run(args: argparse.Namespace) -> int:
    """Run the agent the parsed flags describe (or its self-test); its exit code."""
    config = config_from(args)
    faults = parse_faults(BUILD_FAULTS)
    if args.self_test:
        return asyncio.run(_self_test(config, faults, args.self_test_timeout))
    agent = make_agent(args, config, faults)
    enable_log_shipping(agent, ship_config(args))
    return asyncio.run(_run(agent))


def main(argv: Sequence[str] | None = None, *, prog: str = "fleet-agent") -> int:
    """Parse ``argv`` (``sys.argv[1:]`` by default), run the agent, return its exit code.

    A bad flag or value is one line on stderr and exit 2; the agent's own errors are one line
    (``fleet: error: ...``) with exit 2 for bad input, 1 otherwise.
    """
    p = parser(prog)
    args = p.parse_args(argv)
    if args.device is None:
        p.error("the following arguments are required: --device-id")
    if args.nats_password is not None:
        p.error(
            "--nats-password: a password on the command line is visible to every local user: "
            "set FLEET_NATS_PASSWORD or use --nats-creds"
        )
    logging_setup.configure(json_lines=args.log_json, level=args.log_level)
    try:
        return run(args)
    except (ConfigError, InvalidMessage) as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return USAGE
    except FleetError as exc:
        print(f"fleet: error: {exc}", file=sys.stderr)
        return 1


def cli() -> None:
    """The ``fleet-agent`` console script: ``fleet agent run`` under a name of its own."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
