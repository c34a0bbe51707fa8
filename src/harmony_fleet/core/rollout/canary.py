"""The canary cohort: a few devices that cover every value of the labels that matter.

Taking the first N ids would try a new version on whatever sorts first (often one site, one
model). The cohort is built in three passes over the candidates in a stable pseudo-random order
(:func:`.fleet.rank`):

1. **cover every value**: greedily, the device that covers the most (label, value) pairs not
   yet covered, until every value of every stratum label (``arch``, ``hardware_model``,
   ``os_release``, ``link_type`` by default; no label is a value too) has a canary. This may
   make the cohort larger than asked: a version is not tried on a fleet it was never tried on.
2. **then every combination**: one device per combined bucket not yet represented, the
   biggest buckets first, while the cohort is under the requested size;
3. **then fill** round-robin over the buckets, biggest first, up to the requested size.
"""

from __future__ import annotations

from collections.abc import Sequence

from harmony_fleet.contracts.ids import DeviceId
from harmony_fleet.core.rollout.fleet import DeviceView, rank

Bucket = tuple[str, ...]


def bucket_of(device: DeviceView, strata: Sequence[str]) -> Bucket:
    """The device's value of each stratum label ("" when it has none)."""
    return tuple(device.labels.get(key, "") for key in strata)


def choose(
    candidates: Sequence[DeviceView], strata: Sequence[str], count: int, salt: str
) -> list[DeviceId]:
    """The canary cohort among ``candidates`` (see the module docstring), in start order."""
    ordered = sorted(candidates, key=lambda d: (rank(salt, d.device_id), d.device_id))
    if not ordered or count <= 0:
        return []
    pairs = {d.device_id: set(enumerate(bucket_of(d, strata))) for d in ordered}
    chosen: list[DeviceId] = []
    taken: set[DeviceId] = set()

    uncovered = set().union(*pairs.values())
    while uncovered:
        best = max(ordered, key=lambda d: len(pairs[d.device_id] & uncovered))
        gain = pairs[best.device_id] & uncovered
        if not gain:
            break
        chosen.append(best.device_id)
        taken.add(best.device_id)
        uncovered -= gain

    buckets: dict[Bucket, list[DeviceView]] = {}
    for device in ordered:
        buckets.setdefault(bucket_of(device, strata), []).append(device)
    by_size = sorted(buckets.items(), key=lambda item: (-len(item[1]), item[0]))
    represented = {bucket_of(d, strata) for d in ordered if d.device_id in taken}
    for key, members in by_size:
        if len(chosen) >= count:
            break
        if key not in represented:
            chosen.append(members[0].device_id)
            taken.add(members[0].device_id)
            represented.add(key)

    queues = [[d for d in members if d.device_id not in taken] for _, members in by_size]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0).device_id)
    return chosen
