"""``fleet demo --ui`` as a person runs it: a real process that prints the dashboard's URL; the
URL (its token included) opens the dashboard in Chromium, which shows the demo's devices."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

#: A real fleet (or the whole demo) and a browser on two shared cores: minutes.
pytestmark = pytest.mark.timeout(600)
URL = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/\?token=\S+)")


async def test_the_demo_prints_a_dashboard_url_that_shows_its_devices(
    tmp_path: Path, browser: Any, artifacts_dir: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "harmony_fleet.cli.entry", "demo", "--ui", "--devices", "2"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            assert line, "the demo ended without printing the dashboard's URL:\n" + "".join(lines)
            lines.append(line)
            found = URL.search(line)
            url = found.group(1) if found else None
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(300_000)
        await page.goto(url)
        await expect(page.locator("#count-devices")).to_have_text("2", timeout=300_000)
        await page.screenshot(path=str(artifacts_dir / "demo.png"), full_page=True)
        rest = (await asyncio.wait_for(proc.stdout.read(), 300)).decode()
        lines.append(rest)
        assert await proc.wait() == 0, "".join(lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "summary" in rest, "".join(lines)
