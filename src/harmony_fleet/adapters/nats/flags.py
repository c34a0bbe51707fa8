"""NATS connection flags, without a CLI framework: from flag values to :class:`NatsOptions`.

``fleet`` (click) and the agent's own entry (``agent.main``, argparse: an idle agent does not
carry click) take the same ``--nats``/``--nats-*`` flags; both turn them into options here, and
hand them on to the processes they start with :func:`nats_argv`. What the flags leave out comes
from the context ``fleet server`` wrote (:mod:`.context`).
"""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from typing import Any

from harmony_fleet.adapters.nats.connection import DEFAULT_URL, NatsOptions
from harmony_fleet.adapters.nats.context import Context
from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["bad_flag", "build_nats_options", "check_nats_url", "nats_argv"]


def bad_flag(flag: str, problem: str) -> ConfigError:
    """The error for a flag whose value we cannot use: one line naming the flag, exit 2.

    (click's ``BadParameter`` and argparse print the whole usage text; docs/cli.md promises one
    line.)
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
