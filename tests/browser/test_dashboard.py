"""The dashboard in a real headless Chromium, on a real fleet: the page loads with the devices
the operator sees; an upgrade started with ``fleet upgrade`` shows its phases live on the device
page, without a reload; a rollback shows its reason; a rollout shows its progress per wave; and
/metrics, parsed with prometheus_client's parser, moved with all of it. Each view is saved as a
screenshot (``test-artifacts/browser/``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from harmony_fleet.adapters.nats.fleet_kv import ROLLOUTS, FleetKV
from harmony_fleet.contracts import ErrorCode, Rollout, Share, UpgradeTimeouts
from harmony_fleet.testing.localfleet import LOCAL_TIMEOUTS
from tests.browser.conftest import DashboardFleet
from tests.dashboard_support import samples
from tests.helpers import eventually, fleet_cmd

#: A real fleet (or the whole demo) and a browser on two shared cores: minutes.
pytestmark = pytest.mark.timeout(600)
DEVICES = ["edge-a", "edge-b", "edge-c"]
#: Generous: Chromium and the fleet share two cores with other work.
UI_TIMEOUT_MS = 90_000


async def online(fleet: DashboardFleet, devices: list[str]) -> None:
    for device in devices:
        await fleet.add_device(device, "1.0.0")

    async def all_online() -> bool:
        records = [await fleet.record(d) for d in devices]
        return all(r is not None and r.online for r in records)

    await eventually(all_online, timeout=90, what="every device online")


async def open_page(browser: Any, fleet: DashboardFleet) -> Any:
    expect.set_options(timeout=UI_TIMEOUT_MS)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(UI_TIMEOUT_MS)
    await page.goto(f"{fleet.dashboard_url}/?token={fleet.token}")  # -> cookie, then "/"
    assert page.url == f"{fleet.dashboard_url}/"
    await page.wait_for_selector("#live.on")  # the event stream is connected
    return page


async def scrape(fleet: DashboardFleet) -> dict[str, float]:
    import aiohttp

    headers = {"Authorization": f"Bearer {fleet.token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(fleet.dashboard_url + "/metrics") as r,
    ):
        assert r.status == 200
        return samples(await r.text())


async def fleet_upgrade(fleet: DashboardFleet, device: str, version: str) -> None:
    """``fleet upgrade DEVICE --version V`` as a person runs it (the release signed first)."""
    await fleet.publish(version)
    manifest = fleet.artifacts[version]
    proc = await asyncio.create_subprocess_exec(
        *fleet_cmd(
            "upgrade",
            device,
            "--version",
            version,
            "--url",
            fleet.url_of(manifest),
            "--sha256",
            manifest.sha256,
            "--size",
            str(manifest.size),
            "--watch-window",
            "2",
            "--cutover-timeout",
            "30",
            "--hold-timeout",
            "60",
            *fleet.cli_nats_args(),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def phases_shown(page: Any) -> list[str]:
    shown: list[str] = await page.eval_on_selector_all(
        "#upgrades .upgrade:first-child [data-step]", "els => els.map(e => e.dataset.step)"
    )
    return shown


async def test_the_fleet_an_upgrade_live_and_a_rollback_with_its_reason(
    fleet: DashboardFleet, browser: Any, artifacts_dir: Path
) -> None:
    await online(fleet, DEVICES)
    before = await scrape(fleet)
    page = await open_page(browser, fleet)

    # The fleet at a glance, then the table with its search.
    # Locator expectations, not wait_for_function: the page's CSP forbids eval (no unsafe-eval).
    await expect(page.locator("#count-devices")).to_have_text("3")
    assert await page.text_content("#count-online") == "3"
    assert "1.0.0" in await page.text_content("#version-chart")
    await page.screenshot(path=str(artifacts_dir / "overview.png"), full_page=True)
    await page.click("nav a[data-view=devices]")
    await page.wait_for_selector("#devices tbody tr >> nth=2")
    assert await page.locator("#devices tbody tr").count() == 3
    await page.fill("#search", "edge-b")
    await expect(page.locator("#devices tbody tr")).to_have_count(1)
    assert await page.text_content("#devices tbody tr td a") == "edge-b"
    await page.screenshot(path=str(artifacts_dir / "devices.png"), full_page=True)

    # An upgrade from the CLI, watched on the device page: no reload, phases appear as they come.
    await page.click("#devices tbody tr td a")
    await page.wait_for_selector("#device[data-device=edge-b]")
    await page.evaluate("window.__sameDocument = true")
    await page.wait_for_selector("#logs")
    await fleet_upgrade(fleet, "edge-b", "2.0.0")
    seen: dict[str, float] = {}
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while "Succeeded" not in seen and time.monotonic() < deadline:
        for phase in await phases_shown(page):
            seen.setdefault(phase, time.monotonic())
        await asyncio.sleep(0.05)
    assert "Succeeded" in seen, f"phases shown: {list(seen)}"
    assert await page.evaluate("window.__sameDocument === true")  # never reloaded
    shown = await phases_shown(page)
    assert shown[0] == "Requested" and shown[-1] == "Succeeded", shown
    assert {"Staging", "Verifying", "CutoverReady", "Committed"} <= set(shown), shown
    assert seen["Staging"] < seen["Succeeded"]  # shown one after the other, as they happened
    await expect(page.locator("#device-version")).to_have_text("2.0.0")
    await page.screenshot(path=str(artifacts_dir / "device-upgrade.png"), full_page=True)

    # A version whose candidate never heartbeats: the device rolls back; the page says why.
    await fleet.request_upgrade(
        "edge-c",
        "2.3.0",
        timeouts=UpgradeTimeouts(self_test_s=30, cutover_s=6, hold_s=30, watch_s=2),
    )
    await page.goto(f"{fleet.dashboard_url}/#/device/edge-c")
    reason = page.locator("#upgrades .upgrade:first-child [data-step=RolledBack] [data-reason]")
    await reason.wait_for()
    code = await reason.get_attribute("data-reason")
    assert code in {c.value for c in ErrorCode}, code
    assert code in (await reason.text_content() or "")
    await page.screenshot(path=str(artifacts_dir / "device-rollback.png"), full_page=True)

    await page.click("nav a[data-view=events]")
    await page.wait_for_selector("#events li[data-kind=upgrade]")
    assert "RolledBack" in (await page.text_content("#events") or "")
    await page.screenshot(path=str(artifacts_dir / "events.png"), full_page=True)

    after = await scrape(fleet)
    assert after["fleet_heartbeats_ingested_total"] > before["fleet_heartbeats_ingested_total"]
    assert after["fleet_upgrade_outcomes_total{outcome=Succeeded}"] == 1
    assert after["fleet_upgrade_outcomes_total{outcome=RolledBack}"] == 1
    assert after[f"fleet_rollbacks_total{{reason={code}}}"] == 1
    assert after["fleet_upgrade_time_to_commit_seconds_count"] == 1
    assert after["fleet_upgrade_time_to_rollback_seconds_count"] == 1
    assert after["fleet_http_event_streams"] >= 1


async def test_a_rollout_shows_its_progress_per_wave(
    fleet: DashboardFleet, browser: Any, artifacts_dir: Path
) -> None:
    await online(fleet, DEVICES)
    page = await open_page(browser, fleet)
    await page.click("nav a[data-view=rollouts]")
    await page.wait_for_selector("#rollouts")
    assert fleet.nc is not None
    kv = FleetKV(fleet.nc)
    await fleet.publish("2.0.0")  # signed: the operator and the devices pin the root
    await (await kv.open(ROLLOUTS)).put(
        "r1",
        Rollout(
            name="r1",
            version="2.0.0",
            canary=Share(count=1),
            max_in_flight=Share(count=1),
            soak_s=0.0,
            spread_s=0.0,
            timeouts=LOCAL_TIMEOUTS,
            created_at=time.time(),
        ),
    )
    rollout = page.locator("[data-rollout=r1]")
    await rollout.wait_for()
    await page.screenshot(path=str(artifacts_dir / "rollout-running.png"), full_page=True)
    await page.wait_for_selector("[data-rollout=r1] [data-phase=Done]", timeout=240_000)
    await page.locator("[data-rollout=r1] tr[data-wave] >> nth=1").wait_for()
    waves = await page.eval_on_selector_all(
        "[data-rollout=r1] tr[data-wave]", "els => els.map(e => e.dataset.wave)"
    )
    assert len(waves) >= 2 and waves[0] == "0", waves  # the canary, then the waves
    assert "3/3 done" in (await rollout.text_content() or "")
    await page.screenshot(path=str(artifacts_dir / "rollout-done.png"), full_page=True)
    metrics = await scrape(fleet)
    assert metrics["fleet_rollout_devices{rollout=r1,state=succeeded}"] == 3
