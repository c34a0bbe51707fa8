"""The Kubernetes mode as an operator ``Extension``: kopf, the reflector and the rollout mirror.

``fleet operator --kubernetes`` builds a :class:`KubernetesExtension` and hands it to
:class:`~harmony_fleet.operator.runtime.Operator`, which calls it with the connected NATS client
once the registry is loaded. It runs three things until the operator stops:

* the :class:`~.reflector.Reflector`, patching statuses from the registry, on the operator's loop;
* the :class:`~.rollout_mirror.RolloutMirror`, turning ``Rollout`` resources into rollouts in
  ``fleet_rollouts`` (which the operator's rollout loop drives) and their status back, also on
  the operator's loop;
* kopf (standalone: one operator instance, no peering), watching ``Device`` resources of one
  namespace and turning spec changes into markers (:mod:`.handlers`), **in a thread with its own
  event loop**. Embedded in the operator's loop, kopf would take SIGINT/SIGTERM over, and at its
  exit it waits for, then cancels, every task created after it started (NATS client tasks
  included). In its own thread it does neither; the handlers' work (KV reads, the marker write)
  is sent to the operator's loop, where the NATS connection lives.

If kopf ends on its own (a failure), the extension sets the operator's ``stop`` so that the
process exits and :attr:`KubernetesExtension.failure` says why (``fleet operator`` exits 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kopf
from kubernetes_asyncio import client

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import FleetKV
from harmony_fleet.operator.kubernetes.api import DeviceApi, RolloutApi, load_configuration
from harmony_fleet.operator.kubernetes.handlers import (
    SpecHandling,
    build_registry,
    settings,
)
from harmony_fleet.operator.kubernetes.reflector import Reflector
from harmony_fleet.operator.kubernetes.rollout_mirror import RolloutMirror
from harmony_fleet.operator.releases import SignedReleases
from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a stopping kopf may take before the operator exits without it.
KOPF_EXIT_S = 10.0


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
    rollout_s: float = 1.0
    """How often ``Rollout`` resources are listed and mirrored (:mod:`.rollout_mirror`)."""
    release_retry_s: float = 10.0
    """How soon a spec naming an unpublished release is tried again."""
    trust_root: Path
    """The release repository's root (``--tuf-root``): versions are looked up in the signed
    metadata (:mod:`harmony_fleet.operator.releases`)."""
    state_dir: Path = Path("/var/lib/harmony-fleet/operator")
    """Where the signed metadata followed so far is kept."""


class KubernetesExtension:
    """Callable as ``ext(operator, nc)``; see the module docstring."""

    __name__ = "kubernetes"

    def __init__(self, options: KubernetesOptions) -> None:
        self.options = options
        self.failure: BaseException | None = None
        self.reflector: Reflector | None = None
        self.handling: SpecHandling | None = None
        self.rollouts: RolloutMirror | None = None

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
        kopf_stop = threading.Event()
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
                on_verdict=self.reflector.set_verdict,
                on_gone=self.reflector.forget,
                retry_s=opts.release_retry_s,
                releases=SignedReleases(nc, opts.trust_root, opts.state_dir),
                _kv=FleetKV(nc, fence=operator.lease),  # markers fenced by the lease (ADR-023)
            )
            kopf_registry = build_registry(
                self.handling,
                kubeconfig=opts.kubeconfig,
                on_loop=_runner(asyncio.get_running_loop()),
            )

            def run_kopf() -> None:
                asyncio.run(
                    kopf.operator(
                        registry=kopf_registry,
                        settings=settings(),
                        namespaces=[opts.namespace],
                        standalone=True,
                        stop_flag=kopf_stop,
                    )
                )

            self.rollouts = RolloutMirror(
                RolloutApi(api_client, opts.namespace),
                FleetKV(nc, fence=operator.lease),  # writes fenced by the lease (ADR-023)
                interval_s=opts.rollout_s,
            )
            tasks = [
                asyncio.ensure_future(asyncio.to_thread(run_kopf)),
                asyncio.ensure_future(self.reflector.run()),
                asyncio.ensure_future(self.rollouts.run()),
            ]
            log.info("Kubernetes mode started", extra={"namespace": opts.namespace})
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self.failure = task.exception()
                    log.error("Kubernetes mode failed", extra={"error": repr(self.failure)})
        finally:
            operator.stop.set()  # if kopf or the reflector ended by themselves: stop all
            kopf_stop.set()
            for task in tasks[1:]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), KOPF_EXIT_S)
            await api_client.close()


def _runner(loop: asyncio.AbstractEventLoop) -> Any:
    """``await on_loop(coro)`` from kopf's thread runs ``coro`` on the operator's loop."""

    async def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    return on_loop
