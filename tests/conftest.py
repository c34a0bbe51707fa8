"""Shared fixtures: a real nats-server per test on a free port with a temporary store; the tier
markers applied by folder; a test that leaves asyncio tasks running fails.

The server is provisioned as `fleet server` provisions it (the fleet's KV buckets and log stream,
by `EmbeddedNats`'s bootstrap), so tests that start agents before any operator find them. It runs
as `fleet server` does, with TLS and authentication required, and writes the admin's context
into the test's own ``XDG_CONFIG_HOME`` (every test gets a fresh one, so a developer's real
context never leaks in): ``fleet`` commands run by a test find it by themselves.

Tiers (docs/testing.md): every test under ``tests/e2e`` is marked ``e2e``, under
``tests/kubernetes`` ``kubernetes`` (and its end-to-end module, with a real operator process and
real agents, ``e2e`` too), under ``tests/systemd`` ``systemd``, under ``tests/browser``
``browser`` and ``e2e`` (a real Chromium on the dashboard of a real fleet). ``-m "not e2e"``
leaves the unit and integration tiers. ``slow`` is applied by the test itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.server import EmbeddedNats

TESTS = Path(__file__).parent
#: Markers by folder under tests/, and by module (path relative to tests/).
TIER_MARKS: dict[str, tuple[str, ...]] = {
    "e2e": ("e2e",),
    "kubernetes": ("kubernetes",),
    "kubernetes/test_kubernetes_mode.py": ("e2e",),
    "systemd": ("systemd",),
    "security": ("security",),
    "browser": ("browser", "e2e"),
    "chaos": ("chaos",),
}


def _closed_connection_heartbeat_check(task: asyncio.Task[object]) -> bool:
    """nats-py's idle-heartbeat checker of a JetStream subscription: it looks at its
    connection only after sleeping two heartbeat intervals (10 s for a KV watch), so it outlives
    a closed connection by that much even when nothing of ours is left. While its connection is
    open it still counts as a leak (a watch of ours that was never stopped)."""
    frame = task.get_coro().cr_frame  # type: ignore[union-attr]
    jsi = frame.f_locals.get("self") if frame is not None else None
    conn = getattr(jsi, "_conn", None)
    return bool(conn is not None and conn.is_closed)


#: Tasks of third-party libraries that outlive a closed client by design: coroutine qualname ->
#: "this one is harmless". Nothing of ours is here: a task of ours still pending is a leak.
FOREIGN_TASKS: dict[str, Callable[[asyncio.Task[object]], bool]] = {
    "JetStreamContext._JSI.activity_check": _closed_connection_heartbeat_check,
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (before ``-m`` selects)."""
    for item in items:
        try:
            rel = item.path.relative_to(TESTS)
        except ValueError:
            continue
        for key in (rel.parts[0], rel.as_posix()):
            for name in TIER_MARKS.get(key, ()):
                item.add_marker(name)


def _pending(tasks: set[asyncio.Task[object]]) -> list[str]:
    names = []
    for task in tasks:
        if task.done():
            continue
        coro = task.get_coro()
        qualname = getattr(coro, "__qualname__", repr(coro))
        harmless = FOREIGN_TASKS.get(qualname)
        if harmless is not None and harmless(task):
            continue
        names.append(f"{task.get_name()} ({qualname})")
    return sorted(names)


@pytest.fixture(autouse=True)
async def _no_leaked_asyncio_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running in its event loop (after every fixture's teardown).

    A task may still be finishing its cancellation: the loop gets a few turns (and at most one
    second) to let it end before the check.
    """
    yield
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()  # the teardown's own task
    deadline = loop.time() + 1.0
    while True:
        left = _pending(asyncio.all_tasks() - {me})  # type: ignore[arg-type]
        if not left or loop.time() > deadline:
            break
        await asyncio.sleep(0.01)
    assert not left, f"the test left asyncio tasks running: {left}"


@pytest.fixture(autouse=True)
def _own_config_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets an empty ``XDG_CONFIG_HOME`` (the fleet context lives there)."""
    home = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("FLEET_CONTEXT", raising=False)
    return home


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Give every test the root logger it found.

    A CLI command run in-process (click's CliRunner) configures logging onto *its* captured
    stdout; left in place, every later log line of the session goes to that closed stream, and
    the "Logging error" reports land in the next command's output (a JSON line then no longer
    parses).
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def nats_server(tmp_path: Path, _own_config_home: Path) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream, TLS and authentication, as `fleet server` runs it;
    ``.stop()``/``.start()`` restart it on the same port."""
    server = EmbeddedNats(
        store_dir=tmp_path / "nats",
        log_file=tmp_path / "nats.log",
        extra_args=["-V"] if os.environ.get("NATS_TRACE") else [],
        context_file=_own_config_home / "harmony-fleet" / "context.json",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_options(nats_server: EmbeddedNats) -> NatsOptions:
    return nats_server.client_options(reconnect_wait_s=0.2)


@pytest.fixture
async def nc(nats_options: NatsOptions) -> AsyncIterator[NatsClient]:
    """A plain client connection for the test itself."""
    client = await connect(nats_options.with_name("test"))
    try:
        yield client
    finally:
        await client.close()
