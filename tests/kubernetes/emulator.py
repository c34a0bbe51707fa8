"""The Kubernetes API emulator for this tier: kmock 0.8, made a little closer to a real server.

No kube-apiserver can run here. kmock serves a real HTTP API that kubernetes_asyncio and kopf talk
to, but it differs from a real server (see /work/shared/guide/testing.md). This subclass closes
the gaps that would let our code pass here and fail on a cluster:

* every write gets a new ``metadata.resourceVersion`` (and a create gets ``uid``,
  ``creationTimestamp``, ``generation``), as the API server assigns them; the operator never
  sets them itself, since a real server refuses a create that carries a resourceVersion;
* the ``status`` subresource is protected as on a real server: a create or a main-object patch
  cannot set ``status``, and a ``/status`` patch can set nothing else.

And it declares the resources kopf discovers at start (namespaces, CRDs, events), without which
kopf waits forever for them to appear in ``/api/v1`` discovery.
"""

from __future__ import annotations

import datetime
import itertools
import uuid
from typing import Any

import kmock
from kmock._internal import rendering  # the type of kmock's requests (no public alias)

from harmony_fleet.operator.kubernetes import resources as r

DEVICES = f"{r.GROUP}/{r.VERSION}/{r.PLURAL}"
ROLLOUTS = f"{r.GROUP}/{r.VERSION}/{r.ROLLOUT_PLURAL}"


class FleetEmulator(kmock.KubernetesEmulator):
    _versions = itertools.count(1)

    async def _handle(self, request: rendering.Request) -> Any:
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            version = str(next(FleetEmulator._versions))
            if request.action == kmock.action.CREATE:
                data.pop("status", None)
                meta.update(
                    resourceVersion=version,
                    uid=str(uuid.uuid4()),
                    generation=1,
                    creationTimestamp=datetime.datetime.now(tz=datetime.UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                )
            elif request.action == kmock.action.UPDATE and request.name is not None:
                if request.subresource == "status":
                    for key in [k for k in data if k not in ("status", "metadata")]:
                        del data[key]
                    data["metadata"] = {"resourceVersion": version}
                else:
                    data.pop("status", None)
                    meta["resourceVersion"] = version
        return await super()._handle(request)


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """The resources of a cluster with our CRD installed, as discovery shows them."""
    emulator.resources[DEVICES] = kmock.ResourceInfo(
        kind=r.KIND,
        singular=r.SINGULAR,
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "patch", "create", "delete"},
    )
    emulator.resources[ROLLOUTS] = kmock.ResourceInfo(
        kind=r.ROLLOUT_KIND,
        singular=r.ROLLOUT_SINGULAR,
        namespaced=True,
        subresources={"status"},
        verbs={"list", "watch", "get", "patch", "create", "delete"},
    )
    emulator.resources["v1/events"] = kmock.ResourceInfo(
        kind="Event", namespaced=True, verbs={"create"}
    )
    emulator.resources["v1/namespaces"] = kmock.ResourceInfo(
        kind="Namespace", namespaced=False, verbs={"list", "watch", "get"}
    )
    emulator.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch", "get"}
    )


def kubeconfig(url: str, namespace: str) -> str:
    """A kubeconfig pointing at the emulator (plain HTTP, a dummy token)."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: kmock, cluster: {{server: "{url}"}}}}]\n'
        "users: [{name: test, user: {token: emulator-token}}]\n"
        f"contexts: [{{name: kmock, context: {{cluster: kmock, user: test, "
        f"namespace: {namespace}}}}}]\n"
        "current-context: kmock\n"
    )
