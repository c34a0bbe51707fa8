"""``Rollout`` resources mirrored into ``fleet_rollouts``, and their status mirrored back.

The thin Kubernetes side of fleet rollouts: the operator's rollout loop (``operator.rollouts``)
drives every rollout in ``fleet_rollouts`` whoever wrote it, so a resource only has to become a
rollout there (:func:`~.rollout_specs.reconcile`: created, then its levers followed), and the
engine's status in ``fleet_rollout_status`` has to come back onto the resource
(:func:`~.rollout_statuses.rollout_status`), patched only when it differs.

Each pass lists the namespace's Rollouts (a handful of objects: one list a second is cheap and
level-triggered, so a missed event or an operator restart loses nothing), applies every spec,
aborts the rollouts whose resource was deleted, and patches statuses. Writes to
``fleet_rollouts`` are compare-and-set: a lost race is tried again on the next pass. If the API
is unreachable the passes back off (up to 30 s), as the Device reflector's do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from harmony_fleet.adapters.nats.fleet_kv import ROLLOUT_STATUSES, ROLLOUTS, FleetKV
from harmony_fleet.adapters.nats.kv import Entry, TypedKV
from harmony_fleet.contracts import Rollout, RolloutStatus
from harmony_fleet.contracts.rollout import rollout_name
from harmony_fleet.errors import Conflict, FleetError, InvalidMessage, NotFound, Refused
from harmony_fleet.operator.kubernetes.api import ObservedRollout, RolloutApi
from harmony_fleet.operator.kubernetes.rollout_specs import abandoned, reconcile, source_of
from harmony_fleet.operator.kubernetes.rollout_statuses import rollout_status
from harmony_fleet.operator.kubernetes.statuses import status_patch

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


def _valid(name: str) -> bool:
    try:
        rollout_name(name)
    except InvalidMessage:
        return False
    return True


@dataclass
class RolloutMirror:
    api: RolloutApi
    kv: FleetKV
    interval_s: float = 1.0
    passes: int = 0
    errors: int = 0
    puts: int = 0

    @property
    def namespace(self) -> str:
        return self.api.namespace

    async def pass_once(self, now: float | None = None) -> None:
        """One pass over the namespace's Rollouts (see the module docstring)."""
        now = time.time() if now is None else now
        observed = await self.api.list()
        specs = await self.kv.open(ROLLOUTS)
        statuses = await self.kv.open(ROLLOUT_STATUSES)
        for name in sorted(observed):
            try:
                await self._one(specs, statuses, observed[name], now)
            except (Refused, Conflict, InvalidMessage) as exc:  # this one, not the API: go on
                self.errors += 1
                log.warning("rollout resource %s: %s", name, exc)
        await self._abort_abandoned(specs, set(observed))
        self.passes += 1

    async def _one(
        self,
        specs: TypedKV[Rollout],
        statuses: TypedKV[RolloutStatus],
        obj: ObservedRollout,
        now: float,
    ) -> None:
        entry = await specs.get(obj.name) if _valid(obj.name) else None
        existing = entry.value if entry is not None else None
        verdict = reconcile(obj.name, obj.spec, existing, namespace=self.namespace, now=now)
        if verdict.put is not None:
            if entry is None:
                await specs.create(obj.name, verdict.put)
                log.info(
                    "rollout created from a Rollout resource",
                    extra={"rollout": obj.name, "target": verdict.put.version},
                )
            else:
                await specs.update(obj.name, verdict.put, last=entry.revision)
            self.puts += 1
            existing = verdict.put
        ours = existing is not None and existing.created_by == source_of(self.namespace, obj.name)
        state: RolloutStatus | None = None
        if ours:
            found = await statuses.get(obj.name)
            state = found.value if found is not None else None
        body = rollout_status(
            state,
            version=existing.version if ours and existing is not None else None,
            valid=verdict.valid,
            reason=verdict.reason.value,
            message=verdict.message,
            previous=obj.status,
            now=now,
        )
        patch = status_patch(obj.status, body)
        if patch is not None:
            try:
                await self.api.patch_status(obj.name, patch)
            except NotFound:
                return  # deleted meanwhile: the next pass aborts its rollout

    async def _abort_abandoned(self, specs: TypedKV[Rollout], names: set[str]) -> None:
        for key in await specs.keys():
            if key in names:
                continue
            entry = await specs.read(key)
            if not isinstance(entry, Entry):  # gone, or undecodable: not one we could abort
                continue
            aborted = abandoned(entry.value, namespace=self.namespace, names=names)
            if aborted is None:
                continue
            try:
                await specs.update(key, aborted, last=entry.revision)
            except Conflict:
                continue  # changed meanwhile: looked at again next pass
            self.puts += 1
            log.warning("Rollout resource deleted: rollout %s aborted", key)

    async def run(self) -> None:
        backoff = 0.0
        while True:
            try:
                await self.pass_once()
                backoff = 0.0
            except FleetError as exc:
                self.errors += 1
                backoff = min(MAX_BACKOFF_S, max(1.0, backoff * 2))
                log.warning(
                    "Rollout resources: pass failed, backing off",
                    extra={"error": str(exc), "retry_in_s": backoff},
                )
            await asyncio.sleep(max(self.interval_s, backoff))
