"""The pure half of the Kubernetes layer imports no Kubernetes library, and the embedded
operator does not load the Kubernetes layer at all (it is imported only with --kubernetes)."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "harmony_fleet.operator.kubernetes.resources",
    "harmony_fleet.operator.kubernetes.bodies",
    "harmony_fleet.operator.kubernetes.statuses",
    "harmony_fleet.operator.kubernetes.decisions",
    "harmony_fleet.operator.kubernetes.crd",
    "harmony_fleet.operator.kubernetes.rollout_crd",
    "harmony_fleet.operator.kubernetes.rollout_specs",
    "harmony_fleet.operator.kubernetes.rollout_statuses",
    "harmony_fleet.cli.main",
]
# (aiohttp is not listed: nats-py imports it by itself when it is installed.)
HEAVY = ("kopf", "kubernetes_asyncio", "yaml", "harmony_fleet.operator.kubernetes.api")


def test_pure_modules_and_the_cli_load_no_kubernetes_library() -> None:
    code = (
        "import importlib, sys\n"
        f"for m in {PURE!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
