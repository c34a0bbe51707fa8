"""Helpers for the Kubernetes tier: read conditions, change a spec as kubectl would."""

from __future__ import annotations

from typing import Any

import aiohttp

from harmony_fleet.operator.kubernetes import resources as r
from tests.kubernetes.conftest import Cluster, KubeFleet


def condition(device: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    if device is None:
        return None
    for cond in (device.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def status_of(device: dict[str, Any] | None) -> dict[str, Any]:
    return dict((device or {}).get("status") or {})


def runs(device: dict[str, Any] | None, version: str) -> bool:
    """The Device says its upgrade Succeeded and it runs ``version``."""
    return phase(device) == "Succeeded" and status_of(device).get("currentVersion") == version


def phase(device: dict[str, Any] | None) -> str | None:
    if device is None:
        return None
    return ((device.get("status") or {}).get("upgrade") or {}).get("phase")


def _url(cluster: Cluster, name: str | None = None, plural: str = r.PLURAL) -> str:
    base = f"{cluster.url}/apis/{r.GROUP}/{r.VERSION}/namespaces/{cluster.namespace}/{plural}"
    return f"{base}/{name}" if name else base


async def patch_spec(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    """``kubectl patch device NAME --type merge -p '{"spec": ...}'``."""
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            _url(cluster, name),
            json={"spec": spec},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def delete_device(cluster: Cluster, name: str) -> None:
    """``kubectl delete device NAME``."""
    async with aiohttp.ClientSession() as session, session.delete(_url(cluster, name)) as resp:
        assert resp.status == 200, await resp.text()


async def create_device(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    """``kubectl apply`` of a new Device (a person writing one by hand)."""
    body = {
        "apiVersion": r.API_VERSION,
        "kind": r.KIND,
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": spec,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(cluster), json=body) as resp,
    ):
        assert resp.status in (200, 201), await resp.text()


async def create_rollout(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    """``kubectl apply`` of a new Rollout."""
    body = {
        "apiVersion": r.API_VERSION,
        "kind": r.ROLLOUT_KIND,
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": spec,
    }
    url = _url(cluster, plural=r.ROLLOUT_PLURAL)
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status in (200, 201), await resp.text()


async def patch_rollout(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    """``kubectl patch rollout NAME --type merge -p '{"spec": ...}'``."""
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            _url(cluster, name, r.ROLLOUT_PLURAL),
            json={"spec": spec},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def delete_rollout(cluster: Cluster, name: str) -> None:
    """``kubectl delete rollout NAME``."""
    url = _url(cluster, name, r.ROLLOUT_PLURAL)
    async with aiohttp.ClientSession() as session, session.delete(url) as resp:
        assert resp.status == 200, await resp.text()


def columns(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What ``kubectl get rollouts`` prints for ``obj``: the CRD's printer columns, each
    jsonPath (plain dotted paths here) read from the stored object."""
    from harmony_fleet.operator.kubernetes.rollout_crd import rollout_crd

    out: dict[str, Any] = {}
    for column in rollout_crd()["spec"]["versions"][0]["additionalPrinterColumns"]:
        value: Any = obj or {}
        for part in column["jsonPath"].strip(".").split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[column["name"]] = value
    return out


async def publish(fleet: KubeFleet, version: str) -> None:
    """``fleet release publish`` of a built artifact into the fleet's signed repository (the
    same code, in this process: the emulator, on this loop, keeps answering the operator)."""
    await fleet.publish(version)
