"""Revoking a device: its live connection is closed within 5 s, it cannot reconnect, and that
survives a restart of the server; the other devices are not touched. Through the real command
(``fleet credentials revoke``) and the real server configuration of ``fleet server``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import connect
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import subjects
from harmony_fleet.errors import ConfigError
from tests.helpers import eventually, run_fleet
from tests.security.support import attacker, tls_options


async def test_a_revoked_device_is_cut_off_within_5_s_and_stays_out(
    nats_server: EmbeddedNats, creds: dict[str, Path]
) -> None:
    a = await attacker(
        nats_server, creds["edge-a"], inbox_prefix=subjects.inbox_prefix("edge-a"), reconnect=True
    )
    b = await attacker(
        nats_server, creds["edge-b"], inbox_prefix=subjects.inbox_prefix("edge-b"), reconnect=True
    )
    try:
        start = time.monotonic()
        done = await asyncio.to_thread(
            run_fleet,
            "credentials",
            "revoke",
            "--device",
            "edge-a",
            "--store-dir",
            str(nats_server.store_dir),
        )
        assert done.returncode == 0, done.stderr
        await eventually(lambda: a.disconnects > 0, timeout=5, what="edge-a disconnected")
        assert time.monotonic() - start < 5
        with pytest.raises(ConfigError, match="refused the credentials"):
            await connect(tls_options(nats_server, creds["edge-a"]))
        assert b.nc.is_connected and b.disconnects == 0, "edge-b is not touched"
        listed = await asyncio.to_thread(
            run_fleet, "credentials", "list", "--json", "--store-dir", str(nats_server.store_dir)
        )
        assert '"name":"edge-a","role":"device","keys":1' in listed.stdout
        assert '"revoked":true' in listed.stdout

        nats_server.stop()
        nats_server.start()
        with pytest.raises(ConfigError, match="refused the credentials"):
            await connect(tls_options(nats_server, creds["edge-a"]))
        await eventually(lambda: b.nc.is_connected, timeout=15, what="edge-b back after restart")
        assert not a.nc.is_connected, "the revoked client never got back in"
    finally:
        await a.close()
        await b.close()


async def test_credentials_issued_again_after_a_revocation_work(
    nats_server: EmbeddedNats, creds: dict[str, Path], tmp_path: Path
) -> None:
    nats_server.auth.revoke("edge-a")
    fresh = nats_server.issue("device", "edge-a", tmp_path / "edge-a-new.creds")
    client = await connect(tls_options(nats_server, fresh))
    assert client.is_connected
    await client.close()
