"""Creating the fleet's KV buckets and log stream: the one place that does.

Called by the operator when it starts (with ``--kv-replicas``) and by the server bootstrap
(``fleet server`` and :class:`~harmony_fleet.adapters.nats.server.EmbeddedNats`, once the server
is up); never by an agent or a CLI command, which only open what exists
(:class:`~harmony_fleet.adapters.nats.fleet_kv.FleetKV`). An import-linter contract keeps this
module out of ``harmony_fleet.agent`` and ``harmony_fleet.cli``.

Provisioning is idempotent and safe to race: an existing bucket or stream is used as it is,
except that replicas are raised (never lowered) to what the deployment asks for, so a bucket
made with one replica before a cluster grew does not stay a single point of failure.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from harmony_fleet.adapters.nats.connection import NatsClient, NatsOptions, connect
from harmony_fleet.adapters.nats.errors import wrap_nats_error
from harmony_fleet.adapters.nats.fleet_kv import (
    BUCKETS,
    LOG_STREAM,
    OBJECT_STORES,
    RAW_BUCKETS,
    BucketDef,
    LogStreamLimits,
)
from harmony_fleet.adapters.nats.stores import ObjectStoreDef, RawBucketDef

log = logging.getLogger(__name__)

#: JetStream's error code for "stream name already in use with a different configuration".
_ERR_STREAM_EXISTS = 10058


async def _raise_replicas(js: JetStreamContext, stream: str, replicas: int) -> None:
    info = await js.stream_info(stream)
    have = info.config.num_replicas or 1
    if have >= replicas:
        return
    log.info("raising replicas", extra={"stream": stream, "from": have, "to": replicas})
    info.config.num_replicas = replicas
    await js.update_stream(info.config)


async def ensure_bucket(
    js: JetStreamContext, bucket: BucketDef[Any] | RawBucketDef, *, replicas: int
) -> KeyValue:
    """``bucket``, created with ``replicas`` if it does not exist yet."""
    try:
        kv = await js.key_value(bucket.name)
    except nats.js.errors.BucketNotFoundError:
        pass
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"open bucket {bucket.name}") from exc
    else:
        try:
            await _raise_replicas(js, f"KV_{bucket.name}", replicas)
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"raise replicas of {bucket.name}", write=True) from exc
        return kv
    try:
        return await js.create_key_value(bucket.config(replicas))
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"create bucket {bucket.name}", write=True) from exc


async def ensure_object_store(
    js: JetStreamContext, store: ObjectStoreDef, *, replicas: int
) -> ObjectStore:
    """``store``, created with ``replicas`` if it does not exist yet (its stream allows
    direct gets: devices read artifacts without a consumer)."""
    try:
        found = await js.object_store(store.name)
    except nats.js.errors.BucketNotFoundError:
        pass
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"open object store {store.name}") from exc
    else:
        try:
            await _raise_replicas(js, store.stream, replicas)
        except (nats.errors.Error, TimeoutError) as exc:
            raise wrap_nats_error(exc, f"raise replicas of {store.name}", write=True) from exc
        return found
    try:
        return await js.create_object_store(store.name, store.config(replicas))
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _ERR_STREAM_EXISTS:
            raise wrap_nats_error(exc, f"create object store {store.name}", write=True) from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"create object store {store.name}", write=True) from exc
    try:  # someone else created it between our look-up and our create
        return await js.object_store(store.name)
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"open object store {store.name}") from exc


async def ensure_log_stream(
    js: JetStreamContext, limits: LogStreamLimits | None = None, *, replicas: int = 1
) -> StreamInfo:
    """The log stream, created with ``limits`` if it does not exist yet (safe to race).

    An existing stream keeps its limits: they are never reconfigured behind an operator's back.
    """
    limits = limits or LogStreamLimits()
    try:
        await _raise_replicas(js, LOG_STREAM, replicas)
        return await js.stream_info(LOG_STREAM)
    except nats.js.errors.NotFoundError:
        pass
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"look up stream {LOG_STREAM}") from exc
    try:
        return await js.add_stream(limits.config(replicas))
    except nats.js.errors.BadRequestError as exc:
        if exc.err_code != _ERR_STREAM_EXISTS:
            raise wrap_nats_error(exc, f"create stream {LOG_STREAM}", write=True) from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"create stream {LOG_STREAM}", write=True) from exc
    try:  # someone else created it between our look-up and our create
        return await js.stream_info(LOG_STREAM)
    except (nats.errors.Error, TimeoutError) as exc:
        raise wrap_nats_error(exc, f"look up stream {LOG_STREAM}") from exc


async def provision(
    nc: NatsClient | JetStreamContext,
    *,
    replicas: int = 1,
    log_limits: LogStreamLimits | None = None,
) -> None:
    """Every bucket and object store of the fleet, and the log stream, with ``replicas``
    (idempotent)."""
    js = nc if isinstance(nc, JetStreamContext) else nc.jetstream()
    buckets: tuple[BucketDef[Any] | RawBucketDef, ...] = (*BUCKETS, *RAW_BUCKETS)
    for bucket in buckets:
        await ensure_bucket(js, bucket, replicas=replicas)
    for store in OBJECT_STORES:
        await ensure_object_store(js, store, replicas=replicas)
    await ensure_log_stream(js, log_limits, replicas=replicas)
    log.info("fleet buckets and log stream ready", extra={"replicas": replicas})


async def provision_at(
    url: str | NatsOptions,
    *,
    replicas: int = 1,
    log_limits: LogStreamLimits | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Connect to ``url`` (or with these options), provision, disconnect (the server bootstrap)."""
    options = url if isinstance(url, NatsOptions) else NatsOptions(servers=(url,))
    nc = await connect(options.with_name("fleet-provision"))
    try:
        await asyncio.wait_for(provision(nc, replicas=replicas, log_limits=log_limits), timeout_s)
    finally:
        await nc.close()


def provision_blocking(url: str | NatsOptions, *, replicas: int = 1) -> None:
    """:func:`provision_at` from synchronous code, even code running inside an event loop (it
    runs on a thread of its own)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(provision_at(url, replicas=replicas))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="fleet-provision", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
