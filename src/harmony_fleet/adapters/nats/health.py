"""How the fleet's buckets and streams are replicated right now: ``fleet doctor``.

:func:`stream_health` reads every stream of the account (each KV bucket is the stream
``KV_<bucket>``, each object store ``OBJ_<store>``, and the log stream) with its cluster
information: how many replicas it was created with, which node leads it, and for every other
replica whether it is current, offline, and how many operations it lags behind the leader.
A single server reports each stream as led by itself with no other replica.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import nats.errors

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.errors import wrap_nats_error

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaHealth:
    """One follower of a stream, as its leader sees it."""

    name: str
    current: bool
    offline: bool
    lag: int
    active_s: float | None
    """Seconds since the leader last heard from it."""


@dataclass(frozen=True)
class StreamHealth:
    name: str
    replicas: int
    leader: str | None
    followers: tuple[ReplicaHealth, ...] = field(default=())
    messages: int = 0

    @property
    def ok(self) -> bool:
        """A leader, every follower it should have, each current and online."""
        return (
            self.leader is not None
            and len(self.followers) == self.replicas - 1
            and all(f.current and not f.offline for f in self.followers)
        )

    @property
    def lag(self) -> int:
        """The worst follower's lag (operations behind the leader)."""
        return max((f.lag for f in self.followers), default=0)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "replicas": self.replicas,
            "leader": self.leader,
            "lag": self.lag,
            "ok": self.ok,
            "messages": self.messages,
            "followers": [
                {
                    "name": f.name,
                    "current": f.current,
                    "offline": f.offline,
                    "lag": f.lag,
                    "active_s": f.active_s,
                }
                for f in self.followers
            ],
        }


async def stream_health(nc: NatsClient) -> list[StreamHealth]:
    """Every stream of the account with its replication state, sorted by name."""
    js = nc.jetstream()
    try:
        infos = await js.streams_info()
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, "list the streams") from exc
    out = []
    for info in infos:
        cluster = info.cluster
        followers = tuple(
            ReplicaHealth(
                name=peer.name or "?",
                current=bool(peer.current),
                offline=bool(peer.offline),
                lag=peer.lag or 0,
                active_s=(peer.active / 1e9) if peer.active is not None else None,
            )
            for peer in ((cluster.replicas or []) if cluster else [])
        )
        out.append(
            StreamHealth(
                name=info.config.name or "?",
                replicas=info.config.num_replicas or 1,
                leader=cluster.leader if cluster else None,
                followers=followers,
                messages=info.state.messages,
            )
        )
    return sorted(out, key=lambda s: s.name)
