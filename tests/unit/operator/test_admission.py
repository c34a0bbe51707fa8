"""Admission: only devices with a live identity enter the registry; a refusal is a counted,
rate-limited security event; JetStream deliveries are told from published messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from msgspec.structs import replace

from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.adapters.nats.kv import Entry
from harmony_fleet.adapters.nats.provenance import from_jetstream
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    DeviceRecord,
    Heartbeat,
    Role,
    UpgradeStatus,
    encode,
)
from harmony_fleet.contracts.identity import DeviceIdentity
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.core.security import MAX_KEYS, SecurityEvents
from harmony_fleet.operator.admission import Admission, Admit
from harmony_fleet.operator.coordinator import Coordinator
from harmony_fleet.operator.registry import Registry
from harmony_fleet.operator.runtime import Operator, OperatorConfig

T0 = 1_800_000_000.0
USER = "U" + "A" * 55


def beat(device: str) -> tuple[str, bytes]:
    hb = Heartbeat(
        device_id=device,
        instance_id="a" * 32,
        agent_version="1.0.0",
        role=Role.MAIN,
        seq=1,
        sent_at=T0,
        uptime_s=1.0,
        interval_s=5.0,
    )
    return f"fleet.{device}.heartbeat", encode(hb)


def identity(device: str, *, revoked: bool = False) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=device, users=[USER], issued_at=T0, revoked_at=T0 + 1 if revoked else None
    )


def admitting(*devices: str) -> tuple[Admission, Registry]:
    admission = Admission()
    for device in devices:
        admission.apply(device, identity(device))
    return admission, Registry(PresencePolicy(), admitted=admission.live)


def test_a_heartbeat_of_a_device_never_issued_is_dropped_and_counted() -> None:
    """Fails when the registry takes any well-formed heartbeat (the admin can publish one)."""
    _, registry = admitting("edge-a")
    assert registry.ingest(*beat("edge-a"), now=T0) is not None
    assert registry.ingest(*beat("ghost"), now=T0) is None
    assert registry.ingest(*beat("ghost"), now=T0 + 1) is None
    assert set(registry.devices) == {"edge-a"}
    assert registry.security.counts["not_issued"] == 2
    assert registry.rejected == 2 and registry.ingested == 1


def test_without_admission_every_device_is_taken() -> None:
    registry = Registry()
    assert registry.ingest(*beat("anyone"), now=T0) is not None
    assert registry.admits("anyone")


def test_a_device_is_admitted_once_issued_and_leaves_when_revoked() -> None:
    admission, registry = admitting()
    assert registry.ingest(*beat("edge-a"), now=T0) is None
    assert admission.apply("edge-a", identity("edge-a")) is False
    assert registry.ingest(*beat("edge-a"), now=T0 + 1) is not None
    assert admission.apply("edge-a", identity("edge-a", revoked=True)) is True
    assert registry.forget("edge-a")
    assert registry.ingest(*beat("edge-a"), now=T0 + 2) is None
    assert "edge-a" not in registry.devices and admission.revoked == {"edge-a"}
    # Issued again after the revocation: a fresh identity, admitted again.
    admission.apply("edge-a", identity("edge-a"))
    assert registry.admits("edge-a") and admission.revoked == set()


def test_an_identity_under_another_device_key_is_ignored() -> None:
    admission, registry = admitting()
    assert admission.apply("edge-a", identity("edge-b")) is False
    assert not registry.admits("edge-a") and not registry.admits("edge-b")


class _Bucket:
    def __init__(self, entries: list[Entry[UpgradeStatus]]) -> None:
        self.name = "fleet_upgrade_status"
        self.entries = entries

    async def values(self) -> AsyncIterator[Entry[UpgradeStatus]]:
        for entry in self.entries:
            yield entry


async def test_a_status_of_a_device_never_issued_is_dropped_and_counted() -> None:
    _, registry = admitting("edge-a")
    coord = Coordinator(registry)
    base = UpgradeStatus(
        upgrade_id="u1",
        device_id="ghost",
        phase=AgentUpgradePhase.SUCCEEDED,
        from_version="1.0.0",
        to_version="2.0.0",
        instance_id="0" * 32,
        started_at=T0,
        updated_at=T0,
    )
    seen: list[UpgradeStatus] = []
    await coord._watch(
        _Bucket([Entry("ghost", base, 1), Entry("edge-a", replace(base, device_id="edge-a"), 2)]),  # type: ignore[arg-type]
        lambda status, now: seen.append(status),
    )
    assert [s.device_id for s in seen] == ["edge-a"]
    assert registry.security.counts["not_issued"] == 1
    assert coord.key_mismatches == 0


def test_security_events_are_counted_always_and_logged_once_a_window() -> None:
    events = SecurityEvents(window_s=60.0)
    assert events.record("not_issued", "ghost", T0) == 0
    assert events.record("not_issued", "ghost", T0 + 1) is None
    assert events.record("not_issued", "ghost", T0 + 2) is None
    assert events.record("not_issued", "other", T0 + 2) == 0, "per key"
    assert events.record("not_issued", "ghost", T0 + 61) == 2, "says how many went unlogged"
    assert events.counts["not_issued"] == 5


def test_security_events_memory_is_bounded() -> None:
    events = SecurityEvents()
    for i in range(MAX_KEYS + 10):
        events.record("not_issued", f"d{i}", T0)
    assert len(events._last) <= MAX_KEYS
    assert events.counts["not_issued"] == MAX_KEYS + 10


@pytest.mark.parametrize(
    ("reply", "headers", "delivered"),
    [
        ("", None, False),
        ("_INBOX.abc.1", None, False),
        ("$JS.ACK.FLEET_LOGS.c.1.1.1.1.0", None, True),
        ("", {"Nats-Stream": "FLEET_LOGS", "Nats-Sequence": "1"}, True),
        ("", {"Status": "100"}, True),
    ],
)
def test_what_jetstream_delivered_is_told_from_what_a_client_published(
    reply: str, headers: dict[str, str] | None, delivered: bool
) -> None:
    assert from_jetstream(reply, headers) is delivered


def test_admission_defaults_to_issued_with_credentials_and_any_without() -> None:
    assert OperatorConfig(nats=NatsOptions(creds_file="x.creds")).admission is Admit.ISSUED
    assert OperatorConfig(nats=NatsOptions()).admission is Admit.ANY
    explicit = OperatorConfig(nats=NatsOptions(creds_file="x.creds"), admit=Admit.ANY)
    assert explicit.admission is Admit.ANY


class _Records:
    """The registry bucket: records by key, puts and deletes in order."""

    def __init__(self, *devices: str) -> None:
        self.ops: list[tuple[str, str]] = []
        self.records = [
            Entry(
                d,
                DeviceRecord(
                    device_id=d, current_version="1.0.0", online=True, first_seen=T0, last_seen=T0
                ),
                1,
            )
            for d in devices
        ]

    async def snapshot(self) -> list[Entry[DeviceRecord]]:
        return self.records

    async def put(self, key: str, value: object) -> int:
        self.ops.append(("put", key))
        return 1

    async def delete(self, key: str) -> None:
        self.ops.append(("delete", key))


async def test_a_record_written_while_its_device_was_revoked_is_deleted_again() -> None:
    """The write of a record may be in flight when the device's revocation arrives: the record
    must not outlive the revocation (fails when the write puts it back for good)."""
    operator = Operator(OperatorConfig(nats=NatsOptions(creds_file="x.creds")))
    assert operator.admission is not None
    operator.admission.apply("edge-a", identity("edge-a"))
    records = _Records()
    operator.devices_kv = records  # type: ignore[assignment]
    operator.registry.ingest(*beat("edge-a"), now=T0)
    state = operator.registry.devices["edge-a"]
    operator.admission.apply("edge-a", identity("edge-a", revoked=True))
    operator.registry.forget("edge-a")  # what following the identities does meanwhile
    await operator._write(state, asyncio.Semaphore(1), T0)
    assert records.ops == [("put", "edge-a"), ("delete", "edge-a")]


async def test_records_of_devices_without_a_live_identity_are_deleted_at_load() -> None:
    operator = Operator(OperatorConfig(nats=NatsOptions(creds_file="x.creds")))
    assert operator.admission is not None
    operator.admission.apply("edge-a", identity("edge-a"))
    operator.admission.apply("edge-r", identity("edge-r", revoked=True))
    records = _Records("edge-a", "edge-r", "ghost")
    operator.devices_kv = records  # type: ignore[assignment]
    await operator._load()
    assert set(operator.registry.devices) == {"edge-a"}
    assert records.ops == [("delete", "edge-r"), ("delete", "ghost")]


async def test_without_any_identity_the_registry_is_kept_not_wiped() -> None:
    """A NATS never set up by `fleet server` has no identities at all: the operator refuses
    every device (and says so) but must not delete the registry it finds."""
    operator = Operator(OperatorConfig(nats=NatsOptions(creds_file="x.creds")))
    records = _Records("edge-a", "edge-b")
    operator.devices_kv = records  # type: ignore[assignment]
    await operator._load()
    assert records.ops == []
    assert operator.registry.devices == {}


def test_a_live_sim_identity_admits_simulated_ids_only_while_it_is_live() -> None:
    admission = Admission()
    registry = Registry(PresencePolicy(), admitted=admission)
    admission.apply("edge-01", DeviceIdentity(device_id="edge-01", users=[USER], issued_at=T0))
    assert registry.ingest(*beat("sim-00001"), T0) is None, "no sim credential yet"
    admission.apply("sim-lab", DeviceIdentity(device_id="sim-lab", users=[USER], issued_at=T0))
    assert registry.ingest(*beat("sim-00001"), T0) is not None
    assert registry.ingest(*beat("edge-01"), T0) is not None
    assert registry.ingest(*beat("edge-02"), T0) is None, "a sim identity admits no real id"
    revoked = DeviceIdentity(device_id="sim-lab", users=[USER], issued_at=T0, revoked_at=T0)
    assert admission.apply("sim-lab", revoked)
    assert registry.ingest(*beat("sim-00002"), T0) is None
