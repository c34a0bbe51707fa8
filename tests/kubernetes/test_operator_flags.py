"""``fleet operator --kubernetes`` with no usable cluster credentials exits 1 and says why,
instead of running half an operator; without ``--tuf-root`` (the release repository's root, the
only source of versions) it exits 2 naming the flag."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from harmony_fleet.testing.releases import LocalReleases
from tests.helpers import fleet_cmd


def _operator(nats_url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fleet_cmd(
            "operator",
            "--nats",
            nats_url,
            "--kubernetes",
            "--namespace",
            "fleet-test",
            "--kubeconfig",
            str(tmp_path / "missing.yaml"),
            *extra,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "FLEET_"))},
            "HOME": str(tmp_path),
        },
    )


def test_without_a_release_root_the_kubernetes_mode_exits_2_naming_the_flag(
    nats_server: Any, tmp_path: Path
) -> None:
    done = _operator(nats_server.url, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "--tuf-root" in line and "signed release metadata" in line


def test_unusable_kubeconfig_stops_the_operator_with_exit_1(
    nats_server: Any, tmp_path: Path
) -> None:
    root = LocalReleases.init(tmp_path / "release").trust_root
    done = _operator(nats_server.url, tmp_path, "--tuf-root", str(root))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Kubernetes mode cannot start" in done.stdout
    assert "missing.yaml" in done.stdout
