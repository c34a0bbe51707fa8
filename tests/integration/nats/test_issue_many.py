"""Issuing credentials for many devices at once (``EmbeddedNats.issue_many``): what the heartbeat
benchmark uses for its thousands of devices, through the same setup as ``fleet credentials``."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import subjects
from harmony_fleet.errors import ConfigError


async def test_each_device_gets_its_own_key_its_record_and_its_identity(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    names = [f"bulk-{i:03d}" for i in range(40)]
    issued = nats_server.issue_many("device", names)
    assert len(issued) == len(names) and len(set(issued)) == len(names)
    record = nats_server.auth.issued()
    assert all(record[n].role == "device" and len(record[n].users) == 1 for n in names)
    assert len({record[n].users[0] for n in names}) == len(names)
    identities = await FleetKV(nc).identities()
    for name in names:
        found = await identities.read(subjects.kv_key(name))
        assert isinstance(found, Entry) and found.value.users == record[name].users

    creds = tmp_path / "bulk-007.creds"
    creds.write_text(issued[7])
    device = await connect(
        NatsOptions(
            servers=(nats_server.url,),
            creds_file=str(creds),
            tls_ca_file=str(nats_server.auth.ca_file),
            inbox_prefix=subjects.inbox_prefix("bulk-007"),
        )
    )
    try:
        assert device.is_connected
    finally:
        await device.close()


def test_a_bad_name_issues_nothing(nats_server: EmbeddedNats) -> None:
    before = nats_server.auth.issued()
    with pytest.raises(ConfigError, match="--device"):
        nats_server.issue_many("device", ["fine-1", "Not A Label"])
    assert nats_server.auth.issued() == before
