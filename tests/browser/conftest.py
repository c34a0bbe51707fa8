"""The browser tier: the dashboard of a real fleet (real agents from real artifacts, a real
``fleet operator --http`` process, signed releases) in a real headless Chromium.

Chromium is Debian's package (``apt-get install chromium``; ``.ci/run`` installs it), driven
by Playwright for Python with ``executable_path``: no browser is ever downloaded (no
``playwright install``). Without a Chromium the tier is skipped, except under CI, where it
fails. Screenshots of every view go to ``test-artifacts/browser/`` (``FLEET_TEST_ARTIFACTS``
overrides the folder; it is git-ignored) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harmony_fleet.testing.localfleet import LocalFleet
from tests.dashboard_support import logged_url, token_file
from tests.fleets import Built, build_versions, running

ROOT = Path(__file__).parents[2]
BUILDS: dict[str, tuple[str, ...]] = {
    "1.0.0": (),
    "2.0.0": (),
    "2.3.0": ("no-heartbeat",),  # the candidate never heartbeats: rolled back before the commit
}
INTERVAL = 0.5


def chromium() -> str:
    found = os.environ.get("FLEET_CHROMIUM") or shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium: apt-get install chromium (.ci/run does)")
        pytest.skip("no chromium (apt-get install chromium)")
    return found


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    out = Path(os.environ.get("FLEET_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, BUILDS)


class DashboardFleet(LocalFleet):
    """A local fleet (signed releases) whose operator serves the dashboard on a free port."""

    token = ""
    dashboard_url = ""

    @property
    def token_path(self) -> Path:
        return self.workdir / "http-tokens"

    def operator_args(self) -> list[str]:
        http = ["--http", "127.0.0.1:0", "--http-token-file", str(self.token_path)]
        return [*super().operator_args(), *http]

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _, self.token = token_file(self.token_path)
        await super().start()
        self.dashboard_url = await logged_url(self.workdir / "operator.log")


@pytest.fixture
async def fleet(tmp_path: Path, built: Built) -> AsyncIterator[DashboardFleet]:
    fleet = DashboardFleet(tmp_path / "fleet", interval_s=INTERVAL, operator_process=True)
    async with running(fleet, built) as f:
        yield f


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    path = chromium()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, headless=True, timeout=60_000)
        try:
            yield b
        finally:
            await b.close()
