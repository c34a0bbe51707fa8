"""``fleet server``: run the embedded nats-server with JetStream in the foreground.

Once the server accepts clients, :class:`~harmony_fleet.adapters.nats.server.EmbeddedNats`
creates the fleet's KV buckets and log stream (one replica; the server bootstrap, see
docs/nats.md), so agents started before any operator find them.

Secure by default: the first start makes the auth setup and the TLS certificates in the store
(docs/security.md), every start runs with TLS and authentication required and writes the
admin's context (``$XDG_CONFIG_HOME/harmony-fleet/context.json``) that every other ``fleet``
command finds by itself. ``--insecure`` runs the old open server and says so on every start.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from harmony_fleet.adapters.nats import context
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.cli import exit_codes


def default_store_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harmony-fleet" / "nats"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT", param_hint="--listen")
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: port must be a number", param_hint="--listen"
        ) from None
    if not (0 < number < 65536 or number == -1):
        raise click.BadParameter(f"{value!r}: port out of range", param_hint="--listen")
    return host, number


@click.command("server")
@click.option("--listen", default="127.0.0.1:4222", show_default=True, metavar="HOST:PORT")
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="JetStream storage. [default: $XDG_STATE_HOME/harmony-fleet/nats]",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="No authentication, no TLS: anyone who reaches the port controls every device. "
    "For experiments only.",
)
@click.option(
    "--dev",
    is_flag=True,
    help="A dev/test server: it may issue sim credentials (fleet sim, docs/sim.md). Without it "
    "(the default, what production runs) `fleet credentials issue --role sim` is refused.",
)
def server_cmd(listen: str, store_dir: Path | None, insecure: bool, dev: bool) -> None:
    """Run NATS with JetStream in the foreground (the embedded default), with TLS and
    authentication required unless --insecure."""
    host, port = parse_listen(listen)
    where = context.default_path()
    server = EmbeddedNats(
        store_dir=store_dir or default_store_dir(),
        host=host,
        port=port,
        insecure=insecure,
        context_file=None if insecure else where,
        dev=dev,
    )

    def forward(signum: int, _frame: object) -> None:
        # Not stop(): it waits for the process, and this handler interrupts the main thread's
        # own wait for it (the two deadlock on Popen's lock); wait() returns once it exits.
        server.terminate()

    if insecure:
        click.echo(
            "fleet server: WARNING: --insecure: no authentication and no TLS; anyone who can "
            f"reach {listen} can run code as root on every device",
            err=True,
        )
    url = server.start()
    # Before the start line: whoever read it may stop us at once.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    security = (
        "INSECURE (open to anyone)"
        if insecure
        else f"TLS and credentials required; admin context {where}"
    ) + ("; dev server: sim credentials may be issued" if dev else "")
    click.echo(
        f"fleet server: NATS with JetStream at {url}, store {server.store_dir}; {security}; "
        "the fleet's buckets and log stream are ready",
        err=True,
    )

    code = server.wait()
    server.stop()
    raise SystemExit(exit_codes.OK if code in (0, -signal.SIGTERM) else exit_codes.FAILED)


def register(group: click.Group) -> None:
    group.add_command(server_cmd)
