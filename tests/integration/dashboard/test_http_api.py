"""The operator's HTTP side against a real nats-server: probes, the JSON API, the event stream,
and /metrics scraped and parsed with prometheus_client's parser while heartbeats, upgrades and
rollbacks happen (the statuses written as an agent writes them)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
from tests.dashboard_support import Dashboard, dashboard, heartbeat, samples, token_file
from tests.helpers import eventually

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, write_marker
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
    new_upgrade_id,
    subjects,
)
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.http.server import HttpOptions, HttpServer
from harmony_fleet.operator.runtime import Operator, OperatorConfig

Phase = AgentUpgradePhase


async def upgrade(nc: NatsClient, device: str, phases: list[Phase], *, error_code: str = "") -> str:
    """Write a marker, then the statuses an agent would write, one phase after the other."""
    uid = new_upgrade_id()
    now = time.time()
    await write_marker(
        nc,
        UpgradeMarker(
            upgrade_id=uid,
            device_id=device,
            target_version="2.0.0",
            artifact_url="https://artifacts.example/a.pyz",
            sha256="0" * 64,
            requested_at=now,
        ),
    )
    statuses = await FleetKV(nc).statuses()
    for phase in phases:
        await asyncio.sleep(0.15)  # the operator reflects each phase before the next comes
        await statuses.put(
            subjects.kv_key(device),
            UpgradeStatus(
                upgrade_id=uid,
                device_id=device,
                phase=phase,
                from_version="1.0.0",
                to_version="2.0.0",
                instance_id="a" * 32,
                started_at=now,
                updated_at=time.time(),
                error_code=error_code if phase.terminal else "",
                error_detail="the candidate never heartbeated" if error_code else "",
            ),
        )
    return uid


async def test_metrics_move_as_heartbeats_upgrades_and_rollbacks_happen(
    nats_options: NatsOptions, nc: NatsClient, tmp_path: Path
) -> None:
    async with dashboard(nats_options, tmp_path) as dash:
        before = await dash.metrics()
        assert before["fleet_operator_ready"] == 1
        assert before["fleet_nats_connected"] == 1
        for seq in range(1, 4):
            for device in ("edge-a", "edge-b"):
                await nc.publish(subjects.heartbeat(device), heartbeat(device, seq=seq))
        await nc.publish(subjects.heartbeat("edge-a"), heartbeat("edge-a"), headers={"X": "1"})

        async def ingested() -> dict[str, float] | None:
            m = await dash.metrics()
            ok = m["fleet_heartbeats_ingested_total"] - before["fleet_heartbeats_ingested_total"]
            return m if ok >= 6 and m["fleet_devices{state=online}"] == 2 else None

        m = await eventually(ingested, what="6 heartbeats counted")
        assert m["fleet_devices_by_version{version=1.0.0}"] == 2
        dropped = sum(v for k, v in m.items() if k.startswith("fleet_security_events_total"))
        assert dropped == 1  # the heartbeat with headers: not what an agent sends

        await upgrade(
            nc, "edge-a", [Phase.STAGING, Phase.VERIFYING, Phase.COMMITTED, Phase.SUCCEEDED]
        )
        await upgrade(nc, "edge-b", [Phase.STAGING, Phase.ROLLED_BACK], error_code="hold_timeout")

        async def ended() -> dict[str, float] | None:
            m = await dash.metrics()
            done = m["fleet_upgrade_outcomes_total{outcome=Succeeded}"]
            back = m["fleet_upgrade_outcomes_total{outcome=RolledBack}"]
            return m if done == 1 and back == 1 else None

        m = await eventually(ended, what="one success and one rollback counted")
        assert m["fleet_rollbacks_total{reason=hold_timeout}"] == 1
        assert m["fleet_upgrade_time_to_commit_seconds_count"] == 1
        assert m["fleet_upgrade_time_to_rollback_seconds_count"] == 1
        assert 0 < m["fleet_upgrade_time_to_commit_seconds_sum"] < 30
        assert m["fleet_upgrades{phase=Succeeded}"] == 1
        assert m["fleet_upgrades{phase=RolledBack}"] == 1


async def test_the_api_shows_devices_their_timeline_and_events(
    nats_options: NatsOptions, nc: NatsClient, tmp_path: Path
) -> None:
    async with dashboard(nats_options, tmp_path) as dash:
        await nc.publish(subjects.heartbeat("edge-a"), heartbeat("edge-a", site="plant-1"))
        await nc.publish(subjects.heartbeat("edge-b"), heartbeat("edge-b", "1.1.0", site="plant-2"))
        await eventually(lambda: len(dash.operator.registry.devices) == 2, what="2 devices")
        status, body = await dash.get("/api/devices?q=plant-2")
        assert status == 200
        assert [d["device_id"] for d in body["devices"]] == ["edge-b"]
        status, body = await dash.get("/api/devices?version=1.0.0&state=online")
        assert [d["device_id"] for d in body["devices"]] == ["edge-a"]

        uid = await upgrade(
            nc, "edge-b", [Phase.STAGING, Phase.ROLLED_BACK], error_code="hold_timeout"
        )

        async def timeline() -> dict[str, object] | None:
            _, device = await dash.get("/api/devices/edge-b")
            ups = device["upgrades"]
            return device if ups and ups[0]["phase"] == "RolledBack" else None

        device = await eventually(timeline, what="edge-b's rollback on its timeline")
        up = device["upgrades"][0]  # type: ignore[index]
        assert up["upgrade_id"] == uid
        assert [s["phase"] for s in up["steps"]] == ["Requested", "Staging", "RolledBack"]
        assert up["steps"][-1]["error_code"] == "hold_timeout"
        assert all(s["duration_s"] >= 0 for s in up["steps"][:-1])
        assert device["labels"] == {"site": "plant-2"}

        _, upgrades = await dash.get("/api/upgrades")
        assert upgrades["upgrades"][0]["device_id"] == "edge-b"
        _, events = await dash.get("/api/events")
        texts = [e["text"] for e in events["events"] if e["device_id"] == "edge-b"]
        assert "upgrade to 2.0.0: RolledBack (hold_timeout)" in texts
        assert (await dash.get("/api/devices/edge-zz"))[0] == 404
        assert (await dash.get("/api/devices/Not_A_Device"))[0] == 400
        _, rollouts = await dash.get("/api/rollouts")
        assert rollouts == {"rollouts": []}


async def test_the_event_stream_pushes_new_devices_and_upgrade_phases(
    nats_options: NatsOptions, nc: NatsClient, tmp_path: Path
) -> None:
    async with (
        dashboard(nats_options, tmp_path) as dash,
        aiohttp.ClientSession(headers=dash.auth()) as session,
        session.get(dash.url + "/api/stream") as stream,
    ):
        assert stream.headers["Content-Type"] == "text/event-stream"
        seen: dict[str, list[object]] = {}

        async def read() -> None:
            name = ""
            async for raw in stream.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    seen.setdefault(name, []).append(json.loads(line[6:]))

        reader = asyncio.ensure_future(read())
        try:
            await eventually(lambda: "hello" in seen, what="hello")
            await nc.publish(subjects.heartbeat("edge-c"), heartbeat("edge-c"))

            def row() -> bool:
                return any(
                    r["device_id"] == "edge-c"
                    for d in seen.get("devices", [])
                    for r in d.get("rows", [])  # type: ignore[union-attr]
                )

            await eventually(row, what="edge-c pushed as a changed row")
            await upgrade(nc, "edge-c", [Phase.STAGING])

            def staged() -> bool:
                return any(u["phase"] == "Staging" for u in seen.get("upgrade", []))  # type: ignore[index]

            await eventually(staged, what="the Staging phase pushed")
            assert any(e["kind"] == "device" for e in seen.get("event", []))  # type: ignore[index]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_readyz_says_503_until_the_registry_is_loaded(
    nats_options: NatsOptions, tmp_path: Path
) -> None:
    path, token = token_file(tmp_path / "tokens")
    server = HttpServer(HttpOptions(port=0, token_file=path, tick_s=0.1))
    operator = Operator(
        OperatorConfig(nats=nats_options, presence=PresencePolicy(), admit=Admit.ANY),
        extensions=[server],
    )
    await server.start(operator)
    dash = Dashboard(operator, server, token)
    try:
        assert (await dash.get("/healthz", token=None))[0] == 200
        status, body = await dash.get("/readyz", token=None)
        assert status == 503
        assert body["reasons"] == ["NATS not connected", "registry not loaded"]
        task = asyncio.ensure_future(operator.run())
        await asyncio.wait_for(operator.ready.wait(), 15)
        assert await dash.get("/readyz", token=None) == (200, {"status": "ready"})
        operator.stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        await server.close()
    text = samples(await _scrape_offline(server))
    assert text["fleet_nats_connected"] == 0


async def _scrape_offline(server: HttpServer) -> str:
    """The registry renders without a server (after the operator closed its connection)."""
    from prometheus_client import generate_latest

    assert server.metrics is not None
    return generate_latest(server.metrics.registry).decode()
