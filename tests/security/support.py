"""Attackers for the security suite: raw nats-py clients holding one role's real credentials.

A permission violation does not raise in nats-py: the server sends ``-ERR`` and the client hands
it to ``error_cb``. :class:`Attacker` records those, so a test asserts both that the server said
no (:meth:`Attacker.refused`) and that nothing happened (read back as the admin).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client

from harmony_fleet.adapters.nats.connection import NatsOptions, inbox_prefix_of_creds
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.testing.localfleet import LocalFleet
from tests.fleets import Built, running
from tests.helpers import eventually


@dataclass
class Attacker:
    nc: Client
    errors: list[str] = field(default_factory=list)
    disconnects: int = 0

    async def refused(self, subject: str, *, what: str = "") -> str:
        """Wait until the server reported a permission violation naming ``subject``; return it."""
        wanted = subject.lower()

        def matching() -> list[str]:
            return [e for e in self.errors if "permissions violation" in e and wanted in e.lower()]

        await eventually(
            lambda: bool(matching()),
            timeout=5,
            what=f"a permission violation for {what or subject}",
        )
        return matching()[0]

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.close()


def tls_options(server: EmbeddedNats, creds: Path | None) -> NatsOptions:
    return NatsOptions(
        servers=(server.url,),
        creds_file=str(creds) if creds else None,
        tls_ca_file=str(server.auth.ca_file),
    )


async def attacker(
    server: EmbeddedNats,
    creds: Path,
    *,
    inbox_prefix: str | None = None,
    reconnect: bool = False,
) -> Attacker:
    """A client holding ``creds`` (reconnecting only when asked); its inbox prefix is the one
    ``creds`` allows (as ``fleet`` commands do) unless ``inbox_prefix`` says otherwise."""
    box: list[Attacker] = []

    async def on_error(exc: Exception) -> None:
        box[0].errors.append(str(exc))

    async def on_disconnect() -> None:
        box[0].disconnects += 1

    box.append(Attacker(nc=Client()))
    await box[0].nc.connect(
        servers=[server.url],
        user_credentials=str(creds),
        tls=tls_options(server, creds).tls_context(),
        inbox_prefix=inbox_prefix or inbox_prefix_of_creds(str(creds)) or "_INBOX",
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        allow_reconnect=reconnect,
        max_reconnect_attempts=-1 if reconnect else 0,
        reconnect_time_wait=0.2,
        connect_timeout=2,
    )
    return box[0]


__all__ = ["Attacker", "attacker", "nats", "tls_options"]


def local_fleet(
    workdir: Path, built: Built, interval_s: float
) -> contextlib.AbstractAsyncContextManager[LocalFleet]:
    """A started :class:`LocalFleet` (secured server, operator, artifact server) that knows the
    ``built`` artifacts; stopped at the end whatever the test did."""
    return running(LocalFleet(workdir, interval_s=interval_s), built, check_left=False)
