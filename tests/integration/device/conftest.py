"""Fixtures for the device-side tests: real artifacts (built once per session), a layout with the
old version installed, a launch spec pointing at a real NATS, a signed mirror (the release
tooling's repository over real HTTP: every download is a verified target), and a process-mode
device (its files, verifying against that mirror, and its candidate runner, as the agent's
driver holds them).

Artifacts run from ``versions/<v>/`` extract themselves on first start (about a second, more on
a loaded machine). Tests that do not look at the tree share one extraction directory through
``HARMONY_FLEET_EXTRACT_DIR`` (passed in the runner's ``env``) so that only the first start of
each artifact is cold; the byte-identical revert test runs without it on purpose.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from proc_support import (
    BUILDS,
    DEVICE,
    OLD,
    Built,
    ProcDevice,
    SignedMirror,
    install,
    live_pids_with,
)
from pytest_httpserver import HTTPServer

from harmony_fleet.adapters.device import AgentLayout
from harmony_fleet.adapters.device.files import AgentFiles
from harmony_fleet.adapters.device.launch import LaunchSpec
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.adapters.process.runner import ProcessRunner
from harmony_fleet.artifacts import build_artifact


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """``artifact("2.0.0")``: the real artifact of that version (see ``BUILDS``), built once."""
    out = tmp_path_factory.mktemp("dist")
    cache: dict[str, Built] = {}

    def get(version: str) -> Built:
        if version not in cache:
            manifest = build_artifact(version, out, faults=BUILDS[version])
            cache[version] = Built(out / manifest.file, manifest)
        return cache[version]

    return get


@pytest.fixture(scope="session")
def extract_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("extract")


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[Path]:
    """The agent's prefix; any process still running from it at the end is killed (and named)."""
    root = tmp_path / "prefix"
    yield root
    strays = live_pids_with(str(root))
    for pid in strays:
        os.kill(pid, signal.SIGKILL)
    assert not strays, f"the test left processes running from {root}: {strays}"


@pytest.fixture
def layout(prefix: Path, artifact: Callable[[str], Built]) -> AgentLayout:
    lay = AgentLayout(prefix)
    install(lay, artifact(OLD))
    lay.swap_current(OLD)
    return lay


@pytest.fixture
def launch(tmp_path: Path, nats_server: EmbeddedNats) -> LaunchSpec:
    return LaunchSpec(
        device_id=DEVICE,
        state_dir=tmp_path / "state",
        nats_args=("--nats", nats_server.url),
        extra_args=("--heartbeat-interval", "0.2"),
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def mirror(tmp_path: Path, httpserver: HTTPServer) -> SignedMirror:
    """The signed repository the device's downloads come from (nothing signed yet)."""
    return SignedMirror(tmp_path / "release", httpserver)


@pytest.fixture
def make_device(
    layout: AgentLayout, launch: LaunchSpec, run_dir: Path, extract_dir: Path, mirror: SignedMirror
) -> Callable[..., ProcDevice]:
    """A fresh device over the same layout and run dir: a new one simulates an agent restart."""

    def make(*, shared_extraction: bool = True) -> ProcDevice:
        env = {"HARMONY_FLEET_EXTRACT_DIR": str(extract_dir)} if shared_extraction else {}
        return ProcDevice(
            AgentFiles(
                layout,
                running_version=OLD,
                run_dir=run_dir,
                trust=mirror.trust(launch.state_dir),
            ),
            ProcessRunner(layout, launch, run_dir=run_dir, stop_grace_s=5.0, env=env),
        )

    return make


@pytest.fixture
def device(make_device: Callable[..., ProcDevice]) -> ProcDevice:
    return make_device()
