"""A viewer's replies arrive below an inbox prefix of its own: it cannot listen to everyone's
(``_INBOX.>``, a device's direct-get answers included) nor race an answer into a device's
request, and ``fleet`` commands run with its credentials still work (the prefix is read from the
``.creds`` file)."""

from __future__ import annotations

import json
from pathlib import Path

from harmony_fleet.adapters.nats.connection import NatsClient, inbox_prefix_of_creds
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import subjects
from tests.helpers import run_fleet
from tests.security.support import attacker


async def test_a_viewer_listens_only_below_its_own_inbox(
    nats_server: EmbeddedNats, creds: dict[str, Path], nc: NatsClient
) -> None:
    own = subjects.viewer_inbox_prefix("viewer")
    assert inbox_prefix_of_creds(str(creds["viewer"])) == own
    viewer = await attacker(nats_server, creds["viewer"], inbox_prefix=own)
    try:
        assert await (await FleetKV(viewer.nc).markers()).read("edge-b") is None, "reads work"
        for subject in ("_INBOX.>", f"{subjects.inbox_prefix('edge-b')}.>", "_INBOX.x.y"):
            await viewer.nc.subscribe(subject)
            violation = await viewer.refused(subject)
            assert "subscription" in violation.lower(), violation
    finally:
        await viewer.close()


def test_fleet_commands_run_with_a_viewer_credential(
    nats_server: EmbeddedNats, creds: dict[str, Path]
) -> None:
    done = run_fleet(
        "devices",
        "--json",
        "--nats",
        nats_server.url,
        "--nats-creds",
        str(creds["viewer"]),
        "--nats-tls-ca",
        str(nats_server.auth.ca_file),
    )
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list | dict)


def test_a_viewer_name_must_be_a_dns_label(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    store = ("--store-dir", str(nats_server.store_dir))
    for bad in ("a.>", "all.viewers", "*"):
        done = run_fleet(
            "credentials", "issue", "--role", "viewer", "--name", bad,
            "--out", str(tmp_path / "v.creds"), *store,
        )  # fmt: skip
        assert done.returncode == 2, (bad, done.stderr)
        assert "--name" in done.stderr and len(done.stderr.strip().splitlines()) == 1
