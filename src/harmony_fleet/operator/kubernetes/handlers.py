"""kopf handlers: a created or changed ``Device.spec`` becomes an upgrade marker in NATS KV.

The handlers only gather inputs (the spec, the marker and status in KV, the version the registry
saw, the target's signed release), ask the pure :mod:`.decisions`, and perform the one effect:
writing the marker through ``adapters.nats.fleet_kv.write_marker``, the one function that
writes markers (compare-and-set), as ``fleet upgrade`` does. What they conclude about the spec is
handed to the reflector as a :class:`~.statuses.SpecVerdict`; the reflector is the only writer
of ``status``, and kopf keeps its own bookkeeping in annotations.

Errors, by what kopf should do: an unusable spec is ``PermanentError`` (nothing changes until
the spec does), an unknown release or an unreachable NATS is ``TemporaryError`` (kopf retries:
publishing the release later is enough).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.fleet_kv import (
    MARKERS,
    STATUSES,
    BucketDef,
    FleetKV,
    write_marker,
)
from harmony_fleet.contracts import (
    UpgradeMarker,
    UpgradeStatus,
    new_upgrade_id,
    subjects,
)
from harmony_fleet.errors import FleetError, InvalidMessage, PermanentError
from harmony_fleet.operator.kubernetes import resources as r
from harmony_fleet.operator.kubernetes.api import bearer_token, load_configuration
from harmony_fleet.operator.kubernetes.decisions import (
    Action,
    Desired,
    SpecProblem,
    Trigger,
    marker_for,
    parse_spec,
    plan,
)
from harmony_fleet.operator.kubernetes.resources import SpecReason
from harmony_fleet.operator.kubernetes.statuses import SpecVerdict
from harmony_fleet.operator.registry import Registry
from harmony_fleet.operator.releases import ReleaseLookup

log = logging.getLogger(__name__)

T = TypeVar("T")

VerdictSink = Callable[[str, SpecVerdict], None]
GoneSink = Callable[[str], None]


@dataclass
class SpecHandling:
    """What the handlers need, passed explicitly (no module globals)."""

    nc: NatsClient
    registry: Registry
    namespace: str
    on_verdict: VerdictSink
    on_gone: GoneSink
    releases: ReleaseLookup
    """The signed release metadata (:class:`~harmony_fleet.operator.releases.SignedReleases`)."""
    retry_s: float = 10.0
    markers_written: int = 0
    _kv: FleetKV | None = field(default=None, repr=False)

    @property
    def kv(self) -> FleetKV:
        if self._kv is None:
            self._kv = FleetKV(self.nc)
        return self._kv

    async def _get(self, bucket: BucketDef[T], key: str) -> T | None:
        try:
            entry = await (await self.kv.open(bucket)).get(key)
        except InvalidMessage as exc:
            log.warning(
                "unreadable KV value ignored", extra={"bucket": bucket.name, "field": exc.field}
            )
            return None
        return entry.value if entry is not None else None

    def _say(self, name: str, valid: bool, reason: SpecReason, message: str) -> None:
        self.on_verdict(name, SpecVerdict(valid=valid, reason=reason, message=message))

    async def reconcile(self, name: str, spec: Mapping[str, Any], trigger: Trigger) -> str:
        """Act on one Device's spec; returns what was decided (for logs and tests)."""
        parsed = parse_spec(name, spec)
        if parsed is None:
            self._say(name, True, SpecReason.NO_DESIRED_VERSION, "spec.agentVersion is not set")
            return "no desired version"
        if isinstance(parsed, SpecProblem):
            self._say(name, False, parsed.reason, parsed.message)
            raise kopf.PermanentError(parsed.message)
        try:
            return await self._reconcile(name, parsed, trigger)
        except PermanentError as exc:
            raise kopf.PermanentError(str(exc)) from exc
        except FleetError as exc:  # NATS away, a lost compare-and-set race, a timed-out write
            raise kopf.TemporaryError(f"{type(exc).__name__}: {exc}", delay=2.0) from exc

    async def _reconcile(self, name: str, desired: Desired, trigger: Trigger) -> str:
        key = subjects.kv_key(desired.device)
        marker: UpgradeMarker | None = await self._get(MARKERS, key)
        status: UpgradeStatus | None = await self._get(STATUSES, key)
        state = self.registry.devices.get(desired.device)
        decided = plan(
            desired,
            trigger=trigger,
            current_version=state.current_version if state is not None else None,
            marker=marker,
            status=status,
        )
        if decided.action is Action.NOTHING:
            self._say(name, True, SpecReason.ACCEPTED, decided.why)
            return decided.why
        release = await self.releases(desired.version)
        made = marker_for(
            desired,
            release,
            upgrade_id=new_upgrade_id(),
            now=time.time(),
            source=f"{self.namespace}/{name}",
        )
        if isinstance(made, SpecProblem):
            self._say(name, False, made.reason, made.message)
            raise kopf.TemporaryError(made.message, delay=self.retry_s)
        await write_marker(self.kv, made)
        self.markers_written += 1
        message = f"{decided.why}: upgrade {made.upgrade_id} requested"
        self._say(name, True, SpecReason.ACCEPTED, message)
        log.info(
            "upgrade marker written from a Device spec",
            extra={
                "device_id": made.device_id,
                "upgrade_id": made.upgrade_id,
                "target": made.target_version,
                "why": decided.why,
            },
        )
        return message


#: Runs a coroutine on the operator's event loop (kopf runs in a thread with its own loop).
OnLoop = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]


async def _here(coro: Coroutine[Any, Any, Any]) -> Any:
    return await coro


def build_registry(
    handling: SpecHandling, *, kubeconfig: str | None, on_loop: OnLoop = _here
) -> kopf.OperatorRegistry:
    """A private kopf registry (no module-level decorators, so nothing global is registered).

    ``on_loop`` carries the handlers' work to the loop that owns the NATS connection.
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # Read again on every (re)login: in a pod, the service account token is rotated.
        cfg = await load_configuration(kubeconfig)
        token = await bearer_token(cfg)
        return kopf.ConnectionInfo(
            server=str(cfg.host),
            ca_path=cfg.ssl_ca_cert,
            insecure=not cfg.verify_ssl,
            username=cfg.username or None,
            password=cfg.password or None,
            scheme="Bearer" if token else None,
            token=token,
            certificate_path=cfg.cert_file,
            private_key_path=cfg.key_file,
        )

    @kopf.on.create(r.GROUP, r.VERSION, r.PLURAL, id="spec-created", registry=registry)
    @kopf.on.update(
        r.GROUP, r.VERSION, r.PLURAL, id="spec-changed", field="spec", registry=registry
    )
    async def spec_changed(name: str, spec: Mapping[str, Any], **_: Any) -> None:
        await on_loop(handling.reconcile(name, dict(spec), Trigger.CHANGE))

    @kopf.on.resume(r.GROUP, r.VERSION, r.PLURAL, id="spec-resumed", registry=registry)
    async def spec_resumed(name: str, spec: Mapping[str, Any], **_: Any) -> None:
        await on_loop(handling.reconcile(name, dict(spec), Trigger.RESUME))

    # optional=True: no finalizer, a deletion is never blocked on us; we only want to know.
    @kopf.on.delete(r.GROUP, r.VERSION, r.PLURAL, id="gone", optional=True, registry=registry)
    async def gone(name: str, **_: Any) -> None:
        await on_loop(_call(handling.on_gone, name))

    return registry


async def _call(fn: Callable[[str], None], name: str) -> None:
    fn(name)


def settings() -> kopf.OperatorSettings:
    """kopf's settings for this operator, and why each differs from kopf's default."""
    s = kopf.OperatorSettings()
    # Least privilege: serve the one namespace we are given; no cluster-wide list/watch of
    # namespaces and CRDs (and the emulator cannot list namespaces anyway).
    s.scanning.disabled = True
    # kopf's bookkeeping goes to annotations, so the reflector stays the only status writer.
    s.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=r.ANNOTATION_PREFIX)
    s.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=r.ANNOTATION_PREFIX)
    # One Event per handler success would be one Event per Device at every restart.
    s.posting.level = logging.WARNING
    # The operator stops kopf itself (stop flag); kopf must never SIGKILL the process.
    s.process.ultimate_exiting_timeout = None
    return s
