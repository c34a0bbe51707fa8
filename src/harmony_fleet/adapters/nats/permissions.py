"""What each role may do on NATS: the permissions written into its user JWT.

==========  =================================================================================
role        may
==========  =================================================================================
admin       everything in the fleet account (the ``fleet`` CLI on the server's machine)
operator    everything but deleting or purging streams, writing the identities bucket and
            writing artifacts (it creates buckets, sends commands, reads who was issued
            credentials, re-signs the release timestamp and snapshot)
viewer      read: heartbeats, KV and the log stream (direct gets, consumers), no writes, no
            commands; replies below its own inbox prefix (:func:`viewer_permissions`)
device      itself only (:func:`device_permissions`)
sim         what a device may do, for every device id but the real devices issued so far
            (:func:`sim_permissions`); issued only by a dev/test server (``fleet server --dev``)
==========  =================================================================================

The rollout buckets (``fleet_rollouts``, ``fleet_rollout_status``, ``fleet_rollout_progress``:
docs/rollouts.md) follow from these rules with nothing added: admin and operator write them, a
viewer reads them, a device has no subject of them at all (its allow-lists name only its own
keys of the upgrade buckets), so it can neither start, halt nor read a rollout.

A device ``D`` may publish its heartbeat, its log lines (``fleet.D.logs.agent`` and
``fleet.D.logs.unit.<name>``, nothing else: the log stream's per-device quota) and its own
status key, and read its own
marker: a direct get on its key's subject (the buckets allow direct gets), woken by a plain
subscription to that one subject (:meth:`~harmony_fleet.adapters.nats.kv.TypedKV.follow`). It
subscribes to its command subject, its own heartbeat (the old agent watching its candidate) and
its own inbox prefix (:func:`~harmony_fleet.contracts.subjects.inbox_prefix`), and answers the
requests it receives (one reply each). It cannot create or delete streams, buckets or consumers,
cannot use ``STREAM.MSG.GET`` (the key is in the body, so it could not be scoped), and cannot
publish to any ``cmd`` subject. It reads the signed release repository, the same for every
device and public to it: the ``fleet_tuf`` metadata bucket and the ``fleet_artifacts`` object
store, by direct gets only (:data:`RELEASE_READS`), and writes neither.

The operator lease (``fleet_lease``, ADR-023) is written by operators (and the admin) only: a
device or a viewer that could write it would depose the active operator, or hold the lease with
no operator behind it and stop every upgrade. Both are denied its key subjects explicitly
(:data:`LEASE_WRITES`), beside their allow-lists that name no KV write of it anyway; a viewer
reads it, and so does a device, by a direct get of its one key only: its agent refuses an
``upgrade_stop`` whose lease epoch is older than the lease's.

Why no consumer at all, not even one whose filter is in the subject
(``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``, which the server does check against the
body): the request body also names the consumer's *deliver subject*, which no permission can
see. Measured with nats-server 2.15: a device allowed to create a consumer filtered to its own
marker created one delivering that marker to ``fleet.<other>.cmd``, a subject it may not publish
to. JetStream delivers as the account, past the user's permissions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from harmony_fleet.adapters.nats.fleet_kv import (
    ARTIFACTS,
    IDENTITIES,
    LEASE,
    LOG_STREAM,
    MARKERS,
    STATUSES,
    TUF_METADATA,
)
from harmony_fleet.adapters.nats.jwt import ALL, Permissions
from harmony_fleet.contracts import subjects
from harmony_fleet.contracts.lease import LEASE_KEY
from harmony_fleet.contracts.logs import ALL_LOGS, SOURCE_AGENT, SOURCE_UNIT_PREFIX, log_subject

log = logging.getLogger(__name__)

ROLES = ("admin", "operator", "device", "viewer", "sim")

#: Commands go to ``fleet.<device>.cmd``: only the operator and the admin send them.
ALL_COMMANDS = f"{subjects.PREFIX}.*.cmd"


def _stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _key_subject(bucket: str, device: str) -> str:
    return f"$KV.{bucket}.{subjects.kv_key(device)}"


#: Direct gets on the signed release repository (``adapters.tuf.fetcher``): a metadata file by
#: its key's subject, an object's meta by its subject, its chunks by ``seq`` + ``next_by_subj``
#: (that form names no subject in the request subject). The stream is in the subject: nothing
#: else can be read through them.
RELEASE_READS = (
    f"$JS.API.DIRECT.GET.{_stream(TUF_METADATA.name)}.>",
    f"$JS.API.DIRECT.GET.{ARTIFACTS.stream}",
    f"$JS.API.DIRECT.GET.{ARTIFACTS.stream}.>",
)


#: Writing, deleting or purging the operator lease: operators and the admin only.
LEASE_WRITES = (
    f"$KV.{LEASE.name}.>",
    f"$JS.API.STREAM.MSG.DELETE.{_stream(LEASE.name)}",
    f"$JS.API.STREAM.PURGE.{_stream(LEASE.name)}",
)


def device_permissions(device: str) -> Permissions:
    """Device ``device`` touches only itself (the module docstring lists what that means)."""
    marker = _key_subject(MARKERS.name, device)
    markers = _stream(MARKERS.name)
    inbox = subjects.inbox_prefix(device)
    return Permissions(
        pub_allow=(
            subjects.heartbeat(device),
            # Its agent's log and its units' (stored together: docs/logs.md, quotas); no other
            # log subject, so it cannot hold more of the log stream than its quota.
            log_subject(device, SOURCE_AGENT),
            log_subject(device, f"{SOURCE_UNIT_PREFIX}*"),
            _key_subject(STATUSES.name, device),
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{markers}",
            f"$JS.API.STREAM.INFO.{_stream(STATUSES.name)}",
            f"$JS.API.STREAM.INFO.{LOG_STREAM}",
            f"$JS.API.DIRECT.GET.{markers}.{marker}",
            # The operator lease's epoch, to refuse a deposed operator's stop (ADR-023).
            f"$JS.API.STREAM.INFO.{_stream(LEASE.name)}",
            f"$JS.API.DIRECT.GET.{_stream(LEASE.name)}.$KV.{LEASE.name}.{LEASE_KEY}",
            *RELEASE_READS,
            f"{inbox}.>",
        ),
        pub_deny=(ALL_COMMANDS, *LEASE_WRITES),
        sub_allow=(subjects.command(device), subjects.heartbeat(device), marker, f"{inbox}.>"),
        responses=True,
    )


def _device_subjects(device: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What :func:`device_permissions` lets ``device`` publish and subscribe to under its own
    name (the subjects a ``sim`` credential is denied for a real device)."""
    marker = _key_subject(MARKERS.name, device)
    pub = (
        subjects.heartbeat(device),
        log_subject(device, SOURCE_AGENT),
        log_subject(device, f"{SOURCE_UNIT_PREFIX}*"),
        _key_subject(STATUSES.name, device),
        f"$JS.API.DIRECT.GET.{_stream(MARKERS.name)}.{marker}",
    )
    return pub, (subjects.command(device), subjects.heartbeat(device), marker)


def sim_permissions(name: str, real_devices: Iterable[str] = ()) -> Permissions:
    """A simulator (``fleet sim``): a device's rights for many device ids on one connection.

    NATS wildcards are whole tokens, so "every id that starts with ``sim-``" cannot be written;
    the credential gets a device's subjects with ``*`` for the device, minus every real device
    issued when it was made (``real_devices``, denied both ways), and nothing of an operator or
    an admin: no marker, no registry, no bucket, no command. A server that holds live ``sim``
    credentials refuses to issue a new real device (:meth:`~harmony_fleet.adapters.nats.auth.
    AuthStore.issue_many`), so no real device is ever outside a live sim credential's deny
    list; the operator admits only ``sim-`` ids from it (:mod:`~harmony_fleet.operator.
    admission`).
    """
    any_device = "*"
    pub, sub = _device_subjects(any_device)
    pub_deny: list[str] = [ALL_COMMANDS, *LEASE_WRITES]
    sub_deny: list[str] = []
    for device in sorted(set(real_devices)):
        their_pub, their_sub = _device_subjects(device)
        pub_deny.extend(their_pub)
        sub_deny.extend(their_sub)
    inbox = subjects.sim_inbox_prefix(name)
    markers = _stream(MARKERS.name)
    return Permissions(
        pub_allow=(
            *pub,
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{markers}",
            f"$JS.API.STREAM.INFO.{_stream(STATUSES.name)}",
            f"$JS.API.STREAM.INFO.{LOG_STREAM}",
            *RELEASE_READS,
            f"{inbox}.>",
        ),
        pub_deny=tuple(pub_deny),
        sub_allow=(*sub, f"{inbox}.>"),
        sub_deny=tuple(sub_deny),
        responses=True,
    )


def viewer_permissions(name: str) -> Permissions:
    """A viewer reads (heartbeats, logs, KV by direct get or consumer) and writes nothing; its
    replies arrive below its own inbox prefix only
    (:func:`~harmony_fleet.contracts.subjects.viewer_inbox_prefix`): subscribing to ``_INBOX.>``
    would show it every client's replies and let it race an answer into a device's request."""
    return Permissions(
        pub_allow=(
            "$JS.API.INFO",
            "$JS.API.STREAM.INFO.>",
            "$JS.API.STREAM.NAMES",
            "$JS.API.STREAM.LIST",
            "$JS.API.CONSUMER.CREATE.>",
            "$JS.API.CONSUMER.INFO.>",
            "$JS.API.CONSUMER.MSG.NEXT.>",
            "$JS.API.DIRECT.GET.>",
            "$JS.API.STREAM.MSG.GET.>",
            "$JS.FC.>",
            "$JS.ACK.>",
        ),
        pub_deny=LEASE_WRITES,
        sub_allow=(
            subjects.ALL_HEARTBEATS,
            ALL_LOGS,
            f"{subjects.viewer_inbox_prefix(name)}.>",
        ),
    )


OPERATOR = Permissions(
    pub_deny=(
        "$JS.API.STREAM.DELETE.>",
        "$JS.API.STREAM.PURGE.>",
        # Who is a device is decided where credentials are issued, not by the operator.
        f"$KV.{IDENTITIES.name}.>",
        f"$JS.API.STREAM.MSG.DELETE.{_stream(IDENTITIES.name)}",
        # The operator re-signs timestamp and snapshot (fleet_tuf) but never writes an
        # artifact: only the release manager (admin) publishes what devices run.
        f"$O.{ARTIFACTS.name}.>",
    )
)


def permissions_for(role: str, name: str, *, real_devices: Iterable[str] = ()) -> Permissions:
    """The permissions of ``role`` (``name`` is the device id for a device; ``real_devices``
    are the devices a ``sim`` credential must not act for)."""
    if role == "sim":
        return sim_permissions(name, real_devices)
    if role == "device":
        return device_permissions(name)
    if role == "viewer":
        return viewer_permissions(name)
    if role == "operator":
        return OPERATOR
    return ALL
