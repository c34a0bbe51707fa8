"""What a device writes is shown as text, never run: a status whose error detail is HTML (a
compromised device writes its own status) shows up literally on the device page, and nothing in
it runs (the page's CSP and text-only rendering). A real operator in this process, real NATS,
real Chromium; no agents needed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions
from harmony_fleet.adapters.nats.fleet_kv import FleetKV, write_marker
from harmony_fleet.contracts import (
    AgentUpgradePhase,
    UpgradeMarker,
    UpgradeStatus,
    new_upgrade_id,
    subjects,
)
from tests.dashboard_support import dashboard, heartbeat

HOSTILE = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'


async def test_a_hostile_error_detail_is_shown_as_text_and_never_runs(
    nats_options: NatsOptions, nc: NatsClient, tmp_path: Path, browser: Any, artifacts_dir: Path
) -> None:
    async with dashboard(nats_options, tmp_path) as dash:
        await nc.publish(subjects.heartbeat("edge-x"), heartbeat("edge-x"))
        uid = new_upgrade_id()
        now = time.time()
        await write_marker(
            nc,
            UpgradeMarker(
                upgrade_id=uid,
                device_id="edge-x",
                target_version="2.0.0",
                artifact_url="https://artifacts.example/a.pyz",
                sha256="0" * 64,
                requested_at=now,
            ),
        )
        await (await FleetKV(nc).statuses()).put(
            subjects.kv_key("edge-x"),
            UpgradeStatus(
                upgrade_id=uid,
                device_id="edge-x",
                phase=AgentUpgradePhase.ROLLED_BACK,
                from_version="1.0.0",
                to_version="2.0.0",
                instance_id="a" * 32,
                started_at=now,
                updated_at=now,
                error_code="candidate_exited",
                error_detail=HOSTILE,
            ),
        )
        page = await browser.new_page()
        await page.goto(f"{dash.url}/?token={dash.token}")
        await page.goto(f"{dash.url}/#/device/edge-x")
        reason = page.locator("[data-step=RolledBack] [data-reason]")
        await expect(reason).to_contain_text(HOSTILE, timeout=60_000)
        await page.screenshot(path=str(artifacts_dir / "device-hostile-detail.png"))
        assert await page.evaluate("window.__xss === undefined")
        assert await page.locator("#upgrades img, #upgrades script").count() == 0
