"""The Kubernetes mode as an operator ``Extension``: kopf and the reflector, side by side.

``fleet operator --kubernetes`` builds a :class:`KubernetesExtension` and hands it to
:class:`~harmony_fleet.operator.runtime.Operator`, which calls it with the connected NATS client
once the registry is loaded. It runs two things until the operator stops:

* kopf (standalone: one operator instance, no peering), watching ``Device`` resources of one
  namespace and turning spec changes into markers (:mod:`.handlers`);
* the :class:`~.reflector.Reflector`, patching statuses from the registry.

kopf takes SIGINT/SIGTERM over when it starts (it installs its own handlers on the loop); when
kopf ends, for a signal or a failure, the extension sets the operator's ``stop`` so that the
whole process shuts down cleanly, and :attr:`KubernetesExtension.failure` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import kopf
from kubernetes_asyncio import client

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.operator.kubernetes.api import DeviceApi, load_configuration
from harmony_fleet.operator.kubernetes.handlers import (
    MarkerWriter,
    SpecHandling,
    build_registry,
    settings,
)
from harmony_fleet.operator.kubernetes.reflector import Reflector
from harmony_fleet.operator.runtime import Operator

log = logging.getLogger("harmony_fleet.operator.kubernetes")


def _without_kopf_settings(record: logging.LogRecord) -> bool:
    """kopf attaches its whole settings object to every per-object log record; our JSON lines
    print every extra field, which made each line kilobytes long. Keep ``k8s_ref``, drop that."""
    record.__dict__.pop("settings", None)
    record.__dict__.pop("k8s_skip", None)
    return True


@dataclass(frozen=True, kw_only=True)
class KubernetesOptions:
    namespace: str = "default"
    kubeconfig: str | None = None
    """None: in-cluster service account, else ``$KUBECONFIG`` or ``~/.kube/config``."""
    interval_s: float = 0.5
    """Longest time between reflection passes (a spec verdict wakes one at once)."""
    resync_s: float = 60.0
    """How often the namespace is listed again (notices deletions and hand edits of status)."""
    release_retry_s: float = 10.0
    """How soon a spec naming an unpublished release is tried again."""


class KubernetesExtension:
    """Callable as ``ext(operator, nc)``; see the module docstring."""

    __name__ = "kubernetes"

    def __init__(self, options: KubernetesOptions, *, write_marker: MarkerWriter) -> None:
        self.options = options
        self.write_marker = write_marker
        self.failure: BaseException | None = None
        self.reflector: Reflector | None = None
        self.handling: SpecHandling | None = None

    async def __call__(self, operator: Operator, nc: NatsClient) -> None:
        opts = self.options
        try:
            cfg = await load_configuration(opts.kubeconfig)
        except Exception as exc:
            self.failure = exc
            log.error("Kubernetes mode cannot start", extra={"error": str(exc)})
            operator.stop.set()
            return
        api_client = client.ApiClient(cfg)
        objects_log = logging.getLogger("kopf.objects")
        if _without_kopf_settings not in objects_log.filters:
            objects_log.addFilter(_without_kopf_settings)
        tasks: list[asyncio.Task[None]] = []
        try:
            self.reflector = Reflector(
                operator,
                DeviceApi(api_client, opts.namespace),
                interval_s=opts.interval_s,
                resync_s=opts.resync_s,
            )
            self.handling = SpecHandling(
                nc=nc,
                registry=operator.registry,
                namespace=opts.namespace,
                write_marker=self.write_marker,
                on_verdict=self.reflector.set_verdict,
                on_gone=self.reflector.forget,
                replicas=operator.config.nats.kv_replicas,
                retry_s=opts.release_retry_s,
            )
            kopf_run = kopf.operator(
                registry=build_registry(self.handling, kubeconfig=opts.kubeconfig),
                settings=settings(),
                namespaces=[opts.namespace],
                standalone=True,
                stop_flag=operator.stop,
            )
            tasks = [
                asyncio.ensure_future(kopf_run),
                asyncio.ensure_future(self.reflector.run()),
            ]
            log.info("Kubernetes mode started", extra={"namespace": opts.namespace})
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self.failure = task.exception()
                    log.error("Kubernetes mode failed", extra={"error": repr(self.failure)})
        finally:
            operator.stop.set()  # kopf ended (a signal it took over, or a failure): stop all
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await api_client.close()
