"""The Kubernetes tier: the kmock API emulator, real NATS, a real operator process, real agents.

Skipped as a whole, with the reason, when kmock, kopf or kubernetes_asyncio cannot be imported
(they come with the ``dev`` and ``kubernetes`` extras). The emulator runs in the test's event
loop; the operator is a separate ``fleet operator --kubernetes`` process that reaches it over
TCP, so the tests must await (never block) while the operator works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

for _module in ("kmock", "kopf", "kubernetes_asyncio"):
    pytest.importorskip(_module, reason=f"the Kubernetes tier needs {_module} (the dev extra)")

import kmock  # noqa: E402

from harmony_fleet.testing.localfleet import LocalFleet  # noqa: E402
from tests.fleets import Built, build_versions, running  # noqa: E402
from tests.kubernetes.emulator import (  # noqa: E402
    DEVICES,
    ROLLOUTS,
    FleetEmulator,
    declare,
    kubeconfig,
)

NS = "fleet-test"
INTERVAL = 0.5
VERSIONS = ("1.0.0", "2.0.0")


@dataclass
class Cluster:
    """The emulator, its URL and a kubeconfig file that points at it."""

    emulator: FleetEmulator
    url: str
    kubeconfig: Path
    namespace: str = NS

    def _object(self, name: str, resource: str = DEVICES) -> Any:
        try:  # kmock's `in` does not parse a string resource key; its [] does
            return self.emulator.objects[resource, self.namespace, name]
        except KeyError:
            return None

    def device(self, name: str) -> dict[str, Any] | None:
        """The Device as stored now, or None."""
        obj = self._object(name)
        return None if obj is None or obj.deleted else dict(obj.raw)

    def rollout(self, name: str) -> dict[str, Any] | None:
        """The Rollout as stored now, or None."""
        obj = self._object(name, ROLLOUTS)
        return None if obj is None or obj.deleted else dict(obj.raw)

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every stored version of the Device, oldest first (kmock keeps them all)."""
        obj = self._object(name)
        return [] if obj is None else [dict(v.raw) for v in obj.history if v is not None]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    emulator = FleetEmulator()
    async with emulator, kmock.Server(emulator) as server:
        declare(emulator)
        url = str(server.url).rstrip("/")
        path = tmp_path / "kubeconfig.yaml"
        path.write_text(kubeconfig(url, NS))
        yield Cluster(emulator, url, path)


class KubeFleet(LocalFleet):
    """A LocalFleet whose operator process runs with ``--kubernetes`` against the emulator, on
    the fleet's signed releases (LocalFleet's ``--tuf-root``: versions resolve through the
    signed metadata)."""

    kube: Cluster

    def operator_args(self) -> list[str]:
        return [
            *super().operator_args(),
            "--kubernetes",
            "--namespace",
            self.kube.namespace,
            "--kubeconfig",
            str(self.kube.kubeconfig),
        ]

    def operator_log(self) -> str:
        path = self.workdir / "operator.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_versions(tmp_path_factory, VERSIONS)


@pytest.fixture
async def fleet(tmp_path: Path, cluster: Cluster, built: Built) -> AsyncIterator[KubeFleet]:
    fleet = KubeFleet(tmp_path / "fleet", interval_s=INTERVAL, operator_process=True)
    fleet.kube = cluster
    async with running(fleet, built) as f:
        yield f
