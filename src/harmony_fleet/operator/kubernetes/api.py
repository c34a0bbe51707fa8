"""The only module that calls the Kubernetes API directly (through kubernetes_asyncio).

Three calls on ``Device`` resources: list a namespace, create one, merge-patch its status; two
on ``Rollout`` resources: list a namespace, merge-patch a status. Errors
are mapped into the project's tree where they enter (``ApiException`` and aiohttp errors never
leak), split by what the caller should do: 404 is :class:`NotFound`, 409 on create means "already
there" (not an error), 4xx otherwise is :class:`Refused`, the rest :class:`Unavailable`.

kubernetes_asyncio picks ``application/json-patch+json`` for a dict body on custom objects,
which a real API server rejects; every patch here says ``merge-patch`` explicitly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from harmony_fleet.errors import ConfigError, NotFound, Refused, Unavailable
from harmony_fleet.operator.kubernetes import resources as r

log = logging.getLogger("harmony_fleet.operator.kubernetes.api")

MERGE_PATCH = "application/merge-patch+json"


def _default_kubeconfig() -> str:
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


async def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """In-cluster service account first, then ``kubeconfig`` (or ``$KUBECONFIG``)."""
    cfg = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return cfg
        except config.ConfigException as exc:
            log.warning("in-cluster configuration failed", extra={"error": str(exc)})
    path = kubeconfig or _default_kubeconfig()
    try:
        await config.load_kube_config(config_file=path, client_configuration=cfg)
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(
            f"no Kubernetes credentials: not in a cluster and kubeconfig {path!r} unusable ({exc})"
        ) from exc
    return cfg


async def bearer_token(cfg: client.Configuration) -> str | None:
    """The token the configuration would send (async in kubernetes_asyncio >= 33.3)."""
    value: Any = cfg.get_api_key_with_prefix("BearerToken")
    if hasattr(value, "__await__"):
        value = await value
    if not value:
        return None
    return str(value).split(" ", 1)[-1]


def _mapped(exc: BaseException, what: str) -> Exception:
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        if status == 404:
            return NotFound(f"{what}: not found")
        if 400 <= status < 500 and status not in (408, 429):
            return Refused(
                f"{what}: HTTP {status} {exc.reason}: {exc.body!r:.300}", code=str(status)
            )
        return Unavailable(f"{what}: HTTP {status} {exc.reason}")
    return Unavailable(f"{what}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class ObservedDevice:
    """What the API says about one Device: enough to decide whether to patch."""

    name: str
    spec: dict[str, Any]
    status: dict[str, Any]


class DeviceApi:
    """``Device`` resources of one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._api = client.CustomObjectsApi(api_client)
        self.creates = 0
        self.patches = 0

    async def list(self) -> dict[str, ObservedDevice]:
        try:
            body = await self._api.list_namespaced_custom_object(
                r.GROUP, r.VERSION, self.namespace, r.PLURAL
            )
        except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, f"list {r.PLURAL} in {self.namespace}") from exc
        out = {}
        for item in body.get("items") or []:
            name = (item.get("metadata") or {}).get("name")
            if isinstance(name, str):
                out[name] = ObservedDevice(
                    name, dict(item.get("spec") or {}), dict(item.get("status") or {})
                )
        return out

    async def create(self, name: str) -> bool:
        """Create an empty Device; False when it exists already (409), which is fine."""
        body = {
            "apiVersion": r.API_VERSION,
            "kind": r.KIND,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {},
        }
        try:
            # The response is not used: an emulator may answer 200 where the API answers 201,
            # and kubernetes_asyncio then returns None instead of the body.
            await self._api.create_namespaced_custom_object(
                r.GROUP, r.VERSION, self.namespace, r.PLURAL, body
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise _mapped(exc, f"create {r.KIND} {self.namespace}/{name}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, f"create {r.KIND} {self.namespace}/{name}") from exc
        self.creates += 1
        return True

    async def patch_status(self, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource; :class:`NotFound` if the Device is gone."""
        try:
            await self._api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                r.GROUP,
                r.VERSION,
                self.namespace,
                r.PLURAL,
                name,
                patch,
                _content_type=MERGE_PATCH,
            )
        except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, f"patch {r.KIND} {self.namespace}/{name} status") from exc
        self.patches += 1


@dataclass(frozen=True)
class ObservedRollout:
    """What the API says about one Rollout."""

    name: str
    spec: dict[str, Any]
    status: dict[str, Any]


class RolloutApi:
    """``Rollout`` resources of one namespace (people write them; we only patch ``status``)."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._api = client.CustomObjectsApi(api_client)
        self.patches = 0

    async def list(self) -> dict[str, ObservedRollout]:
        plural = r.ROLLOUT_PLURAL
        try:
            body = await self._api.list_namespaced_custom_object(
                r.GROUP, r.VERSION, self.namespace, plural
            )
        except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, f"list {plural} in {self.namespace}") from exc
        out = {}
        for item in body.get("items") or []:
            meta = item.get("metadata") or {}
            name = meta.get("name")
            if isinstance(name, str) and not meta.get("deletionTimestamp"):
                out[name] = ObservedRollout(
                    name, dict(item.get("spec") or {}), dict(item.get("status") or {})
                )
        return out

    async def patch_status(self, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the status subresource; :class:`NotFound` if the Rollout is gone."""
        what = f"patch {r.ROLLOUT_KIND} {self.namespace}/{name} status"
        try:
            await self._api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                r.GROUP,
                r.VERSION,
                self.namespace,
                r.ROLLOUT_PLURAL,
                name,
                patch,
                _content_type=MERGE_PATCH,
            )
        except (ApiException, aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, what) from exc
        self.patches += 1
