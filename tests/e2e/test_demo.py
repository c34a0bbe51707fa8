"""``fleet demo``, the README's first command, run as a user runs it: a real process, real
agents, the secure default (TLS and one JWT credential per device), its JSON summary checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_demo_upgrades_and_rolls_back_with_tls_and_device_credentials(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harmony_fleet.cli.entry", "demo", "--devices", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=420,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    assert summary["security"] == {"tls": True, "auth": "jwt", "device_credentials": 2}
    assert "NATS at tls://" in proc.stderr
    assert summary["signed_releases"] == ["1.0.0", "2.0.0", "2.5.0", "3.0.0", "4.0.0"]
    for device in summary["devices"].values():
        assert device["upgrade"]["outcome"] == "Succeeded"
        tampered = device["tampered_upgrade"]
        assert (tampered["outcome"], tampered["error_code"]) == ("Failed", "untrusted")
        assert tampered["error_detail"].startswith("hash mismatch"), tampered
        assert device["broken_upgrade"]["outcome"] == "RolledBack"
        assert device["post_commit_upgrade"]["error_code"] == "post_commit"
