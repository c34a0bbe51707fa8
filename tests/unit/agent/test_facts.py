"""The facts an agent reports in its heartbeat labels (arch, OS release, executor, time zone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_fleet.agent.config import AgentConfig
from harmony_fleet.agent.facts import arch, device_facts, os_release, time_zone
from harmony_fleet.agent.runtime import Agent
from harmony_fleet.contracts import DeviceId


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
