"""``fleet operator --kubernetes`` with no usable cluster credentials exits 1 and says why,
instead of running half an operator."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import fleet_cmd


def test_unusable_kubeconfig_stops_the_operator_with_exit_1(
    nats_server: Any, tmp_path: Path
) -> None:
    done = subprocess.run(
        fleet_cmd(
            "operator",
            "--nats",
            nats_server.url,
            "--kubernetes",
            "--namespace",
            "fleet-test",
            "--kubeconfig",
            str(tmp_path / "missing.yaml"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "FLEET_"))},
            "HOME": str(tmp_path),
        },
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Kubernetes mode cannot start" in done.stdout
    assert "missing.yaml" in done.stdout
