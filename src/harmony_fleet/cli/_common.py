"""Options and helpers shared by the commands: NATS flags, logging flags, output, async runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from harmony_fleet import logging_setup
from harmony_fleet.adapters.nats import flags
from harmony_fleet.adapters.nats.connection import DEFAULT_URL, NatsOptions

F = TypeVar("F", bound=Callable[..., Any])

#: One line naming the flag, exit 2 (defined with the NATS flags, which the agent parses too).
bad_flag = flags.bad_flag
T = TypeVar("T")


def nats_options(func: F) -> F:
    """Add ``--nats`` (repeatable, ``FLEET_NATS_URL``) and credential flags to a command."""
    options = [
        click.option(
            "--nats",
            "nats_urls",
            multiple=True,
            envvar="FLEET_NATS_URL",
            show_envvar=True,
            metavar="URL",
            help="NATS server URL; repeat for every node of a cluster. [default: the context's "
            f"(written by `fleet server`), else {DEFAULT_URL}]",
        ),
        click.option("--nats-user", envvar="FLEET_NATS_USER", help="NATS user name."),
        click.option(
            "--nats-password",
            envvar="FLEET_NATS_PASSWORD",
            help="NATS password: from FLEET_NATS_PASSWORD only (a command line is visible to "
            "every local user).",
        ),
        click.option(
            "--nats-creds",
            envvar="FLEET_NATS_CREDS",
            help="NATS .creds file (JWT + nkey). [default: the context's]",
        ),
        click.option(
            "--nats-tls-ca",
            envvar="FLEET_NATS_TLS_CA",
            help="CA bundle to verify the NATS server's TLS certificate. [default: the context's]",
        ),
        click.option(
            "--nats-tls-cert",
            envvar="FLEET_NATS_TLS_CERT",
            help="Client certificate for mutual TLS (with --nats-tls-key).",
        ),
        click.option(
            "--nats-tls-key",
            envvar="FLEET_NATS_TLS_KEY",
            help="The client certificate's private key.",
        ),
        click.option(
            "--insecure",
            "nats_insecure",
            is_flag=True,
            envvar="FLEET_NATS_INSECURE",
            help="Allow a plain nats:// URL to a host that is not this machine (anyone on the "
            "way reads and rewrites the traffic).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_nats_options(**flag_values: Any) -> NatsOptions:
    """The options :func:`nats_options`' flags ask for (``adapters.nats.flags``), after refusing
    a password given on the command line."""
    _no_secret_in_argv("nats_password", "--nats-password", "FLEET_NATS_PASSWORD")
    return flags.build_nats_options(**flag_values)


def _no_secret_in_argv(param: str, flag: str, envvar: str) -> None:
    """Refuse a secret given on the command line (``ps`` shows it to every local user)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or param not in ctx.params:
        return
    if ctx.get_parameter_source(param) is click.core.ParameterSource.COMMANDLINE:
        raise bad_flag(
            flag,
            "a password on the command line is visible to every local user: "
            f"set {envvar} or use --nats-creds",
        )


def log_options(func: F) -> F:
    func = click.option(
        "--log-json", is_flag=True, envvar="FLEET_LOG_JSON", help="Log one JSON object per line."
    )(func)
    func = click.option(
        "--log-level",
        default="INFO",
        envvar="FLEET_LOG_LEVEL",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        show_default=True,
    )(func)
    return func


def keep_versions_option(*, envvar: str | None = None) -> Callable[[F], F]:
    """``--keep-versions N`` (at least 2: the running and the previous version)."""
    return click.option(
        "--keep-versions",
        type=click.IntRange(min=2),
        default=2,
        show_default=True,
        envvar=envvar,
        show_envvar=envvar is not None,
        help="Versions kept on disk after a successful upgrade (the running and the previous "
        "one always among them).",
    )


def tuf_root_option(help_text: str) -> Callable[[F], F]:
    """``--tuf-root FILE`` (``FLEET_TUF_ROOT``): the release repository's root.json that a
    command verifies signed release metadata from (docs/releases.md)."""
    return click.option(
        "--tuf-root",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        envvar="FLEET_TUF_ROOT",
        show_envvar=True,
        help=help_text,
    )


def setup_logging(log_json: bool, log_level: str, *, stream: Any = None) -> None:
    logging_setup.configure(json_lines=log_json, level=log_level, stream=stream)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (clean shutdown) instead of raising."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=None, separators=(",", ":"), default=str))


def is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
