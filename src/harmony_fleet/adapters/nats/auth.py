"""The server's decentralised-auth setup: keys, JWTs, issued credentials, revocations.

``fleet server`` keeps everything in ``<store>/auth`` (0700), made on first start by
:meth:`AuthStore.ensure`:

* ``operator.nk`` and ``operator.jwt``: the trust root the server is configured with;
* ``sys.nk``/``fleet.nk``: the system account (the server's own requests, revocation pushes) and
  the ``FLEET`` account every fleet client lives in; their JWTs sit in ``jwt/``, the directory of
  nats-server's built-in ``full`` resolver, which needs no other daemon and keeps what it is
  sent, so a revocation survives a restart;
* ``sys.creds``: the system user that pushes account updates;
* ``tls/``: the CA and the server certificate (:mod:`.pki`);
* ``issued.json``: every credential issued (role, name, user key, when, revoked or not).

Roles (:mod:`.permissions` says what each may do): ``admin`` (the CLI), ``operator``,
``device`` (one per device id, scoped to itself), ``viewer`` (read-only) and ``sim`` (the
device simulator: issued only while the store is a dev/test server's, ``fleet server --dev``,
which :attr:`AuthStore.dev` records in ``<store>/auth/dev``; docs/sim.md).

Revoking a name puts its user keys into the ``FLEET`` account JWT's revocation list, writes
that JWT into the resolver directory, and pushes it to a running server over
``$SYS.REQ.CLAIMS.UPDATE``: the server closes the revoked users' connections at once and
refuses them from then on.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from harmony_fleet.adapters.nats import jwt as natsjwt
from harmony_fleet.adapters.nats.connection import NatsOptions, connect
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.adapters.nats.files import write_public, write_secret
from harmony_fleet.adapters.nats.jwt import NKey
from harmony_fleet.adapters.nats.permissions import ROLES, permissions_for
from harmony_fleet.contracts.ids import device_id as check_device_id
from harmony_fleet.contracts.subjects import SIM_DEVICE_PREFIX
from harmony_fleet.errors import ConfigError, InvalidMessage, NotFound, Refused

log = logging.getLogger(__name__)

FLEET_ACCOUNT = "FLEET"
SYS_ACCOUNT = "SYS"


@dataclass
class Issued:
    """One name credentials were issued to (a device id, or an operator/viewer/admin name)."""

    name: str
    role: str
    users: list[str] = field(default_factory=list)
    issued_at: float = 0.0
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class AuthStore:
    """The auth setup under ``root`` (``<store>/auth``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths -------------------------------------------------------------------------------
    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def resolver_dir(self) -> Path:
        return self.root / "jwt"

    @property
    def sys_creds(self) -> Path:
        return self.root / "sys.creds"

    @property
    def admin_creds(self) -> Path:
        """The admin's credentials ``fleet server`` wrote at its first start."""
        return self.root / "admin.creds"

    def admin_options(self, servers: tuple[str, ...]) -> NatsOptions:
        """Options that reach ``servers`` as the admin (creds and CA of this store)."""
        return NatsOptions(
            servers=servers, creds_file=str(self.admin_creds), tls_ca_file=str(self.ca_file)
        )

    @property
    def operator_jwt_file(self) -> Path:
        return self.root / "operator.jwt"

    def exists(self) -> bool:
        return (self.root / "fleet.nk").exists()

    @property
    def dev(self) -> bool:
        """True while this store is a dev/test server's (``fleet server --dev``, the test
        fixtures' ``EmbeddedNats(dev=True)``): only then are ``sim`` credentials issued."""
        return (self.root / "dev").exists()

    def set_dev(self, dev: bool) -> None:
        """Record how the server was started (every start says it again)."""
        marker = self.root / "dev"
        if dev:
            write_public(marker, "sim credentials may be issued (fleet server --dev)\n")
        else:
            marker.unlink(missing_ok=True)

    def _seed(self, name: str) -> NKey:
        try:
            return NKey.from_seed((self.root / f"{name}.nk").read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read the NATS auth setup in {self.root}: {exc}") from exc

    @property
    def account_public(self) -> str:
        return self._seed("fleet").public

    @property
    def system_account_public(self) -> str:
        return self._seed("sys").public

    # -- first start -------------------------------------------------------------------------
    def ensure(self, *, hosts: tuple[str, ...] = ()) -> bool:
        """Make the whole setup if it does not exist yet; True when it was made now."""
        if self.exists():
            return False
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        operator, sys_account, fleet = (
            NKey.create("operator"),
            NKey.create("account"),
            NKey.create("account"),
        )
        write_secret(self.root / "operator.nk", operator.seed)
        write_secret(self.root / "sys.nk", sys_account.seed)
        op_jwt = natsjwt.operator_jwt(
            operator, name="harmony-fleet", system_account=sys_account.public
        )
        write_public(self.operator_jwt_file, op_jwt)
        self.resolver_dir.mkdir(mode=0o700, exist_ok=True)
        sys_jwt = natsjwt.account_jwt(
            operator, sys_account.public, name=SYS_ACCOUNT, jetstream=False
        )
        write_public(self.resolver_dir / f"{sys_account.public}.jwt", sys_jwt)
        sys_user = NKey.create("user")
        write_secret(
            self.sys_creds,
            natsjwt.creds(
                natsjwt.user_jwt(sys_account, sys_user.public, name="sys", permissions=natsjwt.ALL),
                sys_user.seed,
            ),
        )
        self.tls_dir.mkdir(mode=0o700, exist_ok=True)
        # cryptography only here: the agent's import path (the CLI) never loads it.
        from harmony_fleet.adapters.nats.pki import make_ca_and_server_cert  # noqa: PLC0415

        make_ca_and_server_cert(self.tls_dir, hosts=hosts)
        write_secret(self.root / "issued.json", "{}")
        # The fleet account seed last: its presence is what exists() looks at.
        write_secret(self.root / "fleet.nk", fleet.seed)
        self.write_account_jwt()
        log.info("NATS auth setup created", extra={"dir": str(self.root)})
        return True

    # -- issued credentials ------------------------------------------------------------------
    def issued(self) -> dict[str, Issued]:
        try:
            raw = json.loads((self.root / "issued.json").read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.root / 'issued.json'}: {exc}") from exc
        return {name: Issued(**value) for name, value in raw.items()}

    def _save_issued(self, issued: dict[str, Issued]) -> None:
        # Rewritten whole at every issue: compact JSON (the C encoder) and plain dicts keep
        # issuing thousands of device credentials in a row fast.
        data = {
            name: {
                "name": entry.name,
                "role": entry.role,
                "users": entry.users,
                "issued_at": entry.issued_at,
                "revoked_at": entry.revoked_at,
            }
            for name, entry in sorted(issued.items())
        }
        write_secret(self.root / "issued.json", json.dumps(data, separators=(",", ":")))

    def account_jwt(self) -> str:
        """The ``FLEET`` account JWT as it should be now (revocations included)."""
        revocations: dict[str, int] = {}
        for entry in self.issued().values():
            if entry.revoked_at is not None:
                for user in entry.users:
                    revocations[user] = int(entry.revoked_at) + 1
        return natsjwt.account_jwt(
            self._seed("operator"),
            self.account_public,
            name=FLEET_ACCOUNT,
            jetstream=True,
            revocations=revocations,
        )

    def write_account_jwt(self) -> str:
        token = self.account_jwt()
        write_public(self.resolver_dir / f"{self.account_public}.jwt", token)
        return token

    def issue(self, role: str, name: str) -> str:
        """New credentials (``.creds`` text) for ``name`` in ``role``; recorded as issued.

        A device's name is its device id. Issuing again for a name adds a new key (the old one
        stays valid until revoked); issuing for a revoked name starts it afresh.
        """
        return self.issue_entry(role, name)[0]

    def issue_entry(self, role: str, name: str) -> tuple[str, Issued]:
        """:meth:`issue`, and the entry of ``issued.json`` as it is now (for the identities
        bucket: :mod:`~harmony_fleet.adapters.nats.identities`)."""
        return self.issue_many(role, [name])[0]

    def issue_many(self, role: str, names: list[str]) -> list[tuple[str, Issued]]:
        """:meth:`issue_entry` for every name in ``names``, with one read and one write of
        ``issued.json`` (issuing a fleet of thousands one by one rewrites it thousands of times:
        quadratic)."""
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if role == "sim" and not self.dev:
            raise Refused(
                "sim credentials are issued only by a dev/test server: this one was not "
                "started with `fleet server --dev` (a simulator acts for many devices at once)"
            )
        if role in ("device", "viewer", "sim"):
            # A device's name is its id; a viewer's is a token of its inbox prefix: both a
            # DNS label, so neither can carry a subject's dots or wildcards.
            flag = "--device" if role == "device" else "--name"
            for name in names:
                try:
                    check_device_id(name)
                except InvalidMessage as exc:
                    raise ConfigError(f"{flag}: {exc}") from exc
        issued = self.issued()
        real = self._check_sim_rules(role, names, issued)
        fleet = self._seed("fleet")
        out: list[tuple[str, Issued]] = []
        for name in names:
            entry = issued.get(name)
            if entry is not None and entry.role != role:
                raise ConfigError(f"{name!r} already has {entry.role} credentials")
            if entry is None or entry.revoked:
                entry = issued[name] = Issued(name=name, role=role)
            user = NKey.create("user")
            token = natsjwt.user_jwt(
                fleet,
                user.public,
                name=name,
                permissions=permissions_for(role, name, real_devices=real),
            )
            entry.users.append(user.public)
            entry.issued_at = time.time()
            out.append((natsjwt.creds(token, user.seed), entry))
        self._save_issued(issued)
        for _, entry in out:
            log.info(
                "credentials issued",
                extra={"role": role, "holder": entry.name, "user": entry.users[-1]},
            )
        return out

    @staticmethod
    def _check_sim_rules(role: str, names: list[str], issued: dict[str, Issued]) -> list[str]:
        """Keep simulated and real devices apart; return the real devices a new ``sim``
        credential must be denied (every device issued, revoked ones included: a revoked id
        may be issued again).

        A ``sim`` credential's name and a simulated device's id start with ``sim-``; a real
        device's never does. A real device is not issued while a live ``sim`` credential
        exists: that credential's deny list was fixed when it was made and does not name it.
        """
        flag = "--device" if role == "device" else "--name"
        for name in names:
            if (role == "sim") != name.startswith(SIM_DEVICE_PREFIX):
                why = "must start with" if role == "sim" else "may not start with"
                raise ConfigError(
                    f"{flag}: {name!r} {why} {SIM_DEVICE_PREFIX!r} (reserved for simulated devices)"
                )
        if role == "device":
            live_sims = sorted(e.name for e in issued.values() if e.role == "sim" and not e.revoked)
            if live_sims:
                raise Refused(
                    f"live sim credentials ({', '.join(live_sims)}) do not deny a device issued "
                    "after them: revoke them (fleet credentials revoke --name NAME), issue the "
                    "device, then issue the sim credentials again"
                )
        if role != "sim":
            return []
        return sorted(e.name for e in issued.values() if e.role == "device")

    def revoke(self, name: str) -> str:
        """Revoke every key of ``name``; return the new account JWT (to push to the server)."""
        issued = self.issued()
        entry = issued.get(name)
        if entry is None:
            raise NotFound(f"no credentials were issued to {name!r}")
        entry.revoked_at = time.time()
        self._save_issued(issued)
        log.info("credentials revoked", extra={"holder": name, "users": len(entry.users)})
        return self.write_account_jwt()

    # -- the server --------------------------------------------------------------------------
    def server_config(self) -> str:
        """The nats-server configuration: operator mode, the full resolver, TLS required."""
        tls = self.tls_dir
        return (
            "# Written by harmony-fleet (fleet server) at every start: edit the code, not this.\n"
            f"operator: {json.dumps(str(self.operator_jwt_file))}\n"
            f"system_account: {self.system_account_public}\n"
            "resolver: {\n"
            "  type: full\n"
            f"  dir: {json.dumps(str(self.resolver_dir))}\n"
            "  allow_delete: false\n"
            '  interval: "2m"\n'
            "}\n"
            "tls: {\n"
            f"  cert_file: {json.dumps(str(tls / 'server.pem'))}\n"
            f"  key_file: {json.dumps(str(tls / 'server-key.pem'))}\n"
            "  timeout: 5\n"
            "}\n"
        )


async def push_account(
    store: AuthStore, servers: tuple[str, ...], *, timeout_s: float = 5.0
) -> None:
    """Send the ``FLEET`` account JWT as it is now to a running server (as its system user).

    The server applies it at once: connections of revoked users are closed and refused from
    then on; it also keeps it in its resolver directory, across restarts.
    """
    options = NatsOptions(
        servers=servers, creds_file=str(store.sys_creds), tls_ca_file=str(store.ca_file)
    )
    nc = await connect(options.with_name("fleet-credentials"))
    try:
        msg = await nc.request("$SYS.REQ.CLAIMS.UPDATE", store.account_jwt().encode(), timeout_s)
    except Exception as exc:
        raise wrap_nats_error(exc, "push the account's revocations") from exc
    finally:
        await nc.close()
    try:
        answer = json.loads(msg.data)
    except ValueError as exc:
        raise Refused(f"the server's answer to the account update is not JSON: {exc}") from exc
    data = answer.get("data") or {}
    if data.get("code") != 200:
        raise Refused(f"the server refused the account update: {answer.get('error') or answer}")
