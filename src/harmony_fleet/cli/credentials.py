"""``fleet credentials``: issue, list and revoke the NATS credentials of devices and people.

Run on the machine of ``fleet server`` (it reads the server's store, where the account key
lives; ``--store-dir`` as for ``fleet server``). Roles and what each may do: docs/security.md.

* ``issue --device ID [--out FILE]``: the device's ``.creds`` (0600) and, beside it, the CA
  bundle it needs (``FILE`` with ``-ca.pem`` instead of ``.creds``); ``fleet agent install
  --nats-creds FILE --nats-tls-ca CA`` uses them. ``issue --role operator|viewer [--name N]``
  for the others.
* ``http-token --out FILE [--add]``: a token for the operator's HTTP side (``fleet operator
  --http-token-file FILE``): the dashboard, ``/metrics`` and the JSON API.
* ``list [--json]``: every name credentials were issued to, its role, and whether revoked.
* ``revoke --device ID`` (or ``--name N``): recorded in the store, then pushed to the running
  server, which closes the holder's connections at once and refuses them from then on (also
  after a restart).

A device's issue and revocation are also written into the identities bucket of the running
server (``--nats``, default: the context's), with the admin's credentials of the store: the
operator admits a device only while its identity there is live. A server that cannot be reached
gets it at its next start (``fleet server`` copies ``issued.json`` in).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

import click

from harmony_fleet.adapters.nats.auth import AuthStore, Issued, push_account
from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.adapters.nats.context import Context
from harmony_fleet.adapters.nats.files import write_public, write_secret
from harmony_fleet.adapters.nats.identities import IDENTITY_ROLES, put_identity
from harmony_fleet.cli import exit_codes
from harmony_fleet.cli._common import bad_flag, print_json
from harmony_fleet.cli.server import default_store_dir
from harmony_fleet.errors import ConfigError, FleetError, Unavailable
from harmony_fleet.operator.http.tokens import new_token

log = logging.getLogger(__name__)

store_option = click.option(
    "--store-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The store of `fleet server`. [default: $XDG_STATE_HOME/harmony-fleet/nats]",
)


def _store(store_dir: Path | None) -> AuthStore:
    store = AuthStore((store_dir or default_store_dir()) / "auth")
    if not store.exists():
        raise ConfigError(
            f"no NATS auth setup in {store.root}: run `fleet server` once (or give --store-dir)"
        )
    return store


@click.group("credentials")
def credentials() -> None:
    """NATS credentials of devices, operators and viewers (on the server's machine)."""


nats_option = click.option(
    "--nats",
    "nats_urls",
    multiple=True,
    metavar="URL",
    help="The running server. [default: the context's]",
)


def _servers(nats_urls: tuple[str, ...]) -> tuple[str, ...]:
    context = Context.find()
    return tuple(nats_urls) or ((context.url,) if context else ())


def _write_identity(store: AuthStore, servers: tuple[str, ...], entry: Issued) -> str | None:
    """Write the device's identity into the running server's bucket (what the operator admits
    by); the reason it could not, if it could not (the server's next start writes it)."""
    if not servers:
        return "no server named (--nats)"
    try:
        asyncio.run(_put_identity(store, servers, entry))
    except Unavailable as exc:
        return f"the server was not reached ({exc})"
    return None


async def _put_identity(store: AuthStore, servers: tuple[str, ...], entry: Issued) -> None:
    nc = await connect(store.admin_options(servers).with_name("fleet-credentials"))
    try:
        await put_identity(nc, entry)
    finally:
        await nc.close()


@credentials.command("issue")
@click.option("--device", "device", metavar="ID", help="A device's own credentials.")
@click.option(
    "--role",
    type=click.Choice(["operator", "viewer", "admin", "sim"]),
    default=None,
    help="sim: the device simulator's (fleet sim), issued only by `fleet server --dev`; its "
    "--name starts with sim-.",
)
@click.option("--name", default=None, help="Who holds them (--role). [default: the role]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@nats_option
@store_option
def issue_cmd(
    device: str | None,
    role: str | None,
    name: str | None,
    out: Path | None,
    nats_urls: tuple[str, ...],
    store_dir: Path | None,
) -> None:
    """Write new credentials (.creds, 0600) and the CA bundle beside them."""
    if (device is None) == (role is None):
        raise bad_flag("--device/--role", "give exactly one of them")
    store = _store(store_dir)
    holder = device or name or ("sim-sim" if role == "sim" else str(role))
    out = out or Path(f"{holder}.creds")
    if out.exists():
        raise bad_flag("--out", f"{out} exists: remove it or choose another file")
    ca = out.with_name(out.stem + "-ca.pem")
    creds, entry = store.issue_entry("device" if device else str(role), holder)
    write_secret(out, creds)
    write_public(ca, store.ca_file.read_bytes())
    if entry.role in IDENTITY_ROLES:
        why = _write_identity(store, _servers(nats_urls), entry)
        if why is not None:
            click.echo(
                f"fleet credentials: {holder}: {why}; the operator admits it once the server "
                "has its identity (written at the server's next start)",
                err=True,
            )
    click.echo(f"{out}")
    click.echo(
        f"fleet credentials: {holder}: credentials in {out}, CA in {ca}"
        + (
            f"; on the device: fleet agent install --device-id {device} --nats-creds {out} "
            f"--nats-tls-ca {ca} --nats tls://SERVER:4222"
            if device
            else ""
        ),
        err=True,
    )


@credentials.command("list")
@click.option("--json", "as_json", is_flag=True)
@store_option
def list_cmd(as_json: bool, store_dir: Path | None) -> None:
    """Every name credentials were issued to."""
    issued = sorted(_store(store_dir).issued().values(), key=lambda e: (e.role, e.name))
    if as_json:
        for entry in issued:
            print_json(
                {
                    "name": entry.name,
                    "role": entry.role,
                    "keys": len(entry.users),
                    "issued_at": entry.issued_at,
                    "revoked": entry.revoked,
                    "revoked_at": entry.revoked_at,
                }
            )
        return
    click.echo(f"{'NAME':<24} {'ROLE':<9} {'KEYS':>4}  {'ISSUED (UTC)':<19}  STATE")
    for entry in issued:
        when = datetime.datetime.fromtimestamp(entry.issued_at, datetime.UTC)
        state = "revoked" if entry.revoked else "valid"
        click.echo(
            f"{entry.name:<24} {entry.role:<9} {len(entry.users):>4}  "
            f"{when:%Y-%m-%d %H:%M:%S}  {state}"
        )


@credentials.command("revoke")
@click.option("--device", "device", metavar="ID", default=None)
@click.option("--name", default=None, help="An operator's or viewer's name.")
@nats_option
@store_option
def revoke_cmd(
    device: str | None, name: str | None, nats_urls: tuple[str, ...], store_dir: Path | None
) -> None:
    """Revoke every key of a device (or name): its connections close, reconnects fail."""
    if (device is None) == (name is None):
        raise bad_flag("--device/--name", "give exactly one of them")
    store = _store(store_dir)
    holder = str(device or name)
    store.revoke(holder)
    servers = _servers(nats_urls)
    if not servers:
        click.echo(
            f"fleet credentials: {holder} revoked in {store.root}; no server named (--nats): "
            "it applies when the server next starts",
            err=True,
        )
        raise SystemExit(exit_codes.UNAVAILABLE)
    try:
        asyncio.run(push_account(store, tuple(servers)))
    except Unavailable as exc:
        click.echo(
            f"fleet credentials: {holder} revoked in {store.root}, but the server was not "
            f"reached ({exc}): it applies when the server next starts",
            err=True,
        )
        raise SystemExit(exit_codes.UNAVAILABLE) from None
    except FleetError:
        raise
    entry = store.issued()[holder]
    if entry.role in IDENTITY_ROLES and _write_identity(store, servers, entry) is not None:
        click.echo(
            f"fleet credentials: {holder} revoked, but its identity was not written: the "
            "operator drops it at the server's next start",
            err=True,
        )
        raise SystemExit(exit_codes.UNAVAILABLE)
    click.echo(f"fleet credentials: {holder} revoked; the server closed its connections", err=True)


@credentials.command("http-token")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The token file (0600) to give `fleet operator --http-token-file`.",
)
@click.option("--add", is_flag=True, help="Add a token to an existing file (one per viewer).")
def http_token_cmd(out: Path, add: bool) -> None:
    """Write a new token for the operator's HTTP side (the dashboard, /metrics, the API).

    Needs no server: the operator reads the file. A person opens the dashboard with
    ``/?token=TOKEN`` once; Prometheus sends ``Authorization: Bearer TOKEN``
    (docs/dashboard.md). The token is not printed: it is in the file.
    """
    if out.exists() and not add:
        raise bad_flag("--out", f"{out} exists: remove it, or give --add to add a token to it")
    if add and not out.exists():
        raise bad_flag("--out", f"{out} does not exist (--add adds to an existing file)")
    # Tokens only, no comment: a file of one token is also what Prometheus' bearer token
    # secret holds (deploy/kubernetes/servicemonitor.yaml).
    before = out.read_text() if add else ""
    if before and not before.endswith("\n"):
        before += "\n"
    write_secret(out, before + new_token() + "\n")
    click.echo(f"{out}: a new token (0600); fleet operator --http-token-file {out}")


def register(group: click.Group) -> None:
    group.add_command(credentials)
