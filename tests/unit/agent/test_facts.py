"""The facts an agent reports in its heartbeat labels (arch, OS release, executor, time zone,
free disk, coarse)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.facts import (
    FREE_DISK_REFRESH_S,
    FreeDisk,
    arch,
    coarse_free_disk,
    device_facts,
    os_release,
    time_zone,
)
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import DeviceId
from harmony_fleet.contracts.rollout import LABEL_FREE_DISK


@pytest.mark.parametrize(
    ("machine", "name"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("AMD64", "amd64"), ("armv7l", "armv7l")],
)
def test_arch(machine: str, name: str) -> None:
    assert arch(machine) == name


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n', "debian-12"),
        ("ID=ubuntu\nVERSION_ID='24.04'\n", "ubuntu-24.04"),
        ("ID=arch\n", "arch"),
        ("", ""),
        ("garbage without equals", ""),
    ],
)
def test_os_release(text: str, release: str) -> None:
    assert os_release(text) == release


@pytest.mark.parametrize(
    ("env", "link", "zone"),
    [
        ("Europe/Paris", "/usr/share/zoneinfo/UTC", "Europe/Paris"),
        (":Asia/Tokyo", None, "Asia/Tokyo"),
        (None, "/usr/share/zoneinfo/America/New_York", "America/New_York"),
        (None, "../usr/share/zoneinfo/Etc/UTC", "Etc/UTC"),
        (None, None, ""),
        (None, "/etc/somewhere", ""),
    ],
)
def test_time_zone(env: str | None, link: str | None, zone: str) -> None:
    assert time_zone(env, link) == zone


def test_the_heartbeat_carries_the_facts_and_a_label_wins_over_a_fact(tmp_path: Path) -> None:
    config = AgentConfig(
        device_id=DeviceId("edge-01"),
        state_dir=tmp_path,
        executor="systemd",
        labels={"arch": "riscv"},
    )
    beat = Agent(config, version="1.0.0").heartbeat()
    facts = device_facts("systemd")
    assert beat.labels["executor"] == "systemd"
    assert beat.labels["arch"] == "riscv"
    assert {k: v for k, v in beat.labels.items() if k != "arch"} == {
        k: v for k, v in facts.items() if k != "arch"
    }


G = 1 << 30


@pytest.mark.parametrize(
    ("free", "reported", "label"),
    [
        (0, None, 0),
        (-5, None, 0),
        (1, None, 1),
        (3 * G, None, 2 * G),  # rounded down: the gate never sees more than there is
        (2 * G, None, 2 * G),
        (2 * G - 1, 2 * G, G),  # below what was reported: down at once
        (3 * G, 2 * G, 2 * G),  # the same power: no change, no registry write
        (4 * G, 2 * G, 2 * G),  # the next power reached, but without the margin: stays
        (6 * G - 1, 2 * G, 2 * G),
        (6 * G, 2 * G, 4 * G),  # 1.5 x the next power: up
        (40 * G, 2 * G, 16 * G),  # up to the power it has 1.5 times
        (G, 0, G // 2),
    ],
)
def test_free_disk_is_coarse(free: int, reported: int | None, label: int) -> None:
    assert coarse_free_disk(max(free, 0), reported) == label


def test_free_disk_hovering_at_a_boundary_does_not_flap() -> None:
    readings = iter([4 * G - 1, 4 * G + 1, 4 * G - 1, 4 * G + 1, 6 * G, 5 * G, 4 * G, 4 * G - 1])
    disk = FreeDisk(lambda: next(readings))
    values = [disk.value() for _ in range(8)]
    assert values == [str(2 * G)] * 4 + [str(4 * G)] * 3 + [str(2 * G)]


def test_the_heartbeat_reports_the_prefixs_free_disk_only_when_it_may_upgrade(
    tmp_path: Path,
) -> None:
    def agent(**fields: object) -> Agent:
        config = AgentConfig(device_id=DeviceId("edge-01"), state_dir=tmp_path, **fields)  # type: ignore[arg-type]
        return Agent(config, version="1.0.0")

    assert LABEL_FREE_DISK not in agent().heartbeat().labels  # no --prefix: no upgrade
    upgrading = agent(install_prefix=tmp_path)
    free = int(upgrading.heartbeat().labels[LABEL_FREE_DISK])
    real = shutil.disk_usage(tmp_path).free
    assert 0 < free <= real < 2 * free + 1 or real == 0
    upgrading.free_disk = FreeDisk(lambda: 100)
    assert upgrading.heartbeat().labels[LABEL_FREE_DISK] == "64"
    pinned = agent(install_prefix=tmp_path, labels={LABEL_FREE_DISK: "999"})
    assert pinned.heartbeat().labels[LABEL_FREE_DISK] == "999"  # --label wins


def test_an_unreadable_filesystem_reports_nothing_new() -> None:
    def broken() -> int:
        raise FileNotFoundError("gone")

    assert FreeDisk(broken).value() is None


def test_the_free_disk_is_read_once_a_minute_not_at_every_heartbeat(tmp_path: Path) -> None:
    now = [0.0]
    reads: list[float] = []
    free = iter([100 * G, G])

    def read() -> int:
        reads.append(now[0])
        return next(free)

    config = AgentConfig(device_id=DeviceId("edge-01"), state_dir=tmp_path, install_prefix=tmp_path)
    agent = Agent(config, version="1.0.0")
    agent.free_disk = FreeDisk(read, refresh_s=FREE_DISK_REFRESH_S, mono=lambda: now[0])
    labels = []
    for beat in range(14):  # 65 s of heartbeats at a 5 s interval
        now[0] = beat * 5.0
        labels.append(agent.heartbeat().labels[LABEL_FREE_DISK])
    assert reads == [0.0, 60.0]
    assert labels == [str(64 * G)] * 12 + [str(G)] * 2


def test_a_failed_free_disk_reading_is_tried_again_at_the_next_heartbeat() -> None:
    readings: list[int | OSError] = [OSError("busy"), 8]

    def read() -> int:
        value = readings.pop(0)
        if isinstance(value, OSError):
            raise value
        return value

    disk = FreeDisk(read, refresh_s=FREE_DISK_REFRESH_S, mono=lambda: 0.0)
    assert disk.value() is None
    assert disk.value() == "8"
    assert readings == []
