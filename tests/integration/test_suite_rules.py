"""The test suite's own rules, run on a throwaway suite: a test that leaves an asyncio task
running fails with its name, a tidy one passes; tiers are selected by marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

ROOT = Path(__file__).parents[2]

CONFTEST = """
from tests.conftest import _no_leaked_asyncio_tasks  # noqa: F401
"""

SUITE = """
import asyncio

async def test_leaks_a_task():
    async def forever():
        await asyncio.Event().wait()
    asyncio.ensure_future(forever())

async def test_cleans_up():
    task = asyncio.ensure_future(asyncio.Event().wait())
    task.cancel()

async def test_waits_for_its_task():
    await asyncio.ensure_future(asyncio.sleep(0))
"""


def test_a_leaked_task_fails_the_test_and_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*the test left asyncio tasks running*forever*"])
    result.stdout.fnmatch_lines(["ERROR test_suite.py::test_leaks_a_task*"])


def _collected(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: everything deselected
    return {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}


def test_tiers_are_selected_by_marker() -> None:
    assert _collected("-m", "not e2e", "tests/e2e") == set()
    assert _collected("-m", "e2e", "tests/kubernetes") == {
        "tests/kubernetes/test_kubernetes_mode.py",
        "tests/kubernetes/test_rollouts.py",  # its one test with a real operator and agents
    }
    kubernetes = _collected("-m", "kubernetes", "tests/kubernetes")
    assert "tests/kubernetes/test_reflector.py" in kubernetes
    assert _collected("-m", "e2e or systemd or kubernetes", "tests/unit/contracts") == set()
