"""Options and helpers shared by the commands: NATS flags, logging flags, output, async runs."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from harmony_fleet import logging_setup
from harmony_fleet.adapters.nats.connection import DEFAULT_URL, NatsOptions
from harmony_fleet.adapters.nats.context import Context
from harmony_fleet.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
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


def bad_flag(flag: str, problem: str) -> ConfigError:
    """The error for a flag whose value we cannot use: one line naming the flag, exit 2.

    (click's own ``BadParameter`` prints the whole usage text; docs/cli.md promises one line.)
    """
    return ConfigError(f"{flag}: {problem}")


def build_nats_options(
    nats_urls: tuple[str, ...],
    nats_user: str | None,
    nats_password: str | None,
    nats_creds: str | None,
    nats_tls_ca: str | None,
    nats_tls_cert: str | None = None,
    nats_tls_key: str | None = None,
    nats_insecure: bool = False,
    **_: Any,
) -> NatsOptions:
    """The options the flags ask for; what they leave out comes from the context, if any
    (:mod:`~harmony_fleet.adapters.nats.context`): its URL, its creds unless a user or creds
    file is given, its CA."""
    _no_secret_in_argv("nats_password", "--nats-password", "FLEET_NATS_PASSWORD")
    context = Context.find()
    if context is not None and not (nats_user or nats_creds):
        nats_creds = context.creds
    if context is not None and not nats_tls_ca:
        nats_tls_ca = context.ca
    urls: list[str] = []
    for value in nats_urls or ((context.url,) if context else (DEFAULT_URL,)):
        urls.extend(u for u in value.replace(",", " ").split() if u)
    for url in urls:
        check_nats_url(url, insecure=nats_insecure)
    if bool(nats_tls_cert) != bool(nats_tls_key):
        raise bad_flag("--nats-tls-cert", "give --nats-tls-cert and --nats-tls-key together")
    for flag, path in (
        ("--nats-creds", nats_creds),
        ("--nats-tls-ca", nats_tls_ca),
        ("--nats-tls-cert", nats_tls_cert),
        ("--nats-tls-key", nats_tls_key),
    ):
        _check_readable(flag, path)
    return NatsOptions(
        servers=tuple(urls),
        user=nats_user,
        password=nats_password,
        creds_file=nats_creds,
        tls_ca_file=nats_tls_ca,
        tls_cert_file=nats_tls_cert,
        tls_key_file=nats_tls_key,
    )


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_nats_url(url: str, *, insecure: bool = False) -> None:
    """Refuse a URL that would put a secret or the fleet's traffic in the clear.

    Credentials in the URL (``nats://user:password@host``) are refused: they end up in logs,
    command lines and unit files (use ``--nats-creds``). A plain ``nats://`` URL to a host that
    is not this machine is refused unless ``--insecure``: a client with a ``nats://`` URL talks
    plain text to a server (or a man in the middle) that does not ask for TLS. Use ``tls://``.
    """
    if "://" not in url:
        raise bad_flag("--nats", f"{url!r} is not a URL (expected tls://HOST:PORT)")
    parsed = urllib.parse.urlsplit(url)
    if parsed.username or parsed.password:
        raise bad_flag(
            "--nats",
            "a user or password in the URL is refused (it would show in logs and command "
            "lines): use --nats-creds FILE, or --nats-user with FLEET_NATS_PASSWORD",
        )
    host = parsed.hostname or ""
    if parsed.scheme == "nats" and not insecure and not _is_loopback(host):
        raise bad_flag(
            "--nats",
            f"{url}: plain nats:// to another host is refused: use tls://{parsed.netloc} "
            "(with --nats-tls-ca), or --insecure",
        )


def _check_readable(flag: str, path: str | None) -> None:
    if path is None:
        return
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise bad_flag(flag, f"cannot read {path}: {exc.strerror or exc}") from exc


def nats_argv(
    nats_urls: tuple[str, ...],
    nats_user: str | None,
    nats_password: str | None,
    nats_creds: str | None,
    nats_tls_ca: str | None,
    nats_tls_cert: str | None = None,
    nats_tls_key: str | None = None,
    nats_insecure: bool = False,
    **_: Any,
) -> tuple[str, ...]:
    """The NATS flags to hand to a process we start (a candidate, the main after a commit).

    The password is deliberately left out: a command line is visible to every local user. It
    reaches child processes through ``FLEET_NATS_PASSWORD`` in their environment, or use a
    creds file.
    """
    argv: list[str] = []
    for url in nats_urls:
        argv += ["--nats", url]
    for flag, value in (
        ("--nats-user", nats_user),
        ("--nats-creds", nats_creds),
        ("--nats-tls-ca", nats_tls_ca),
        ("--nats-tls-cert", nats_tls_cert),
        ("--nats-tls-key", nats_tls_key),
    ):
        if value:
            argv += [flag, value]
    if nats_insecure:
        argv.append("--insecure")
    return tuple(argv)


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
