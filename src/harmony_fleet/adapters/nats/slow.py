"""Slow consumers: the messages nats-py drops when a subscription's pending limits are hit.

nats-py keeps every delivered message in its subscription's pending queue until the callback
takes it. Past ``pending_msgs_limit`` messages or ``pending_bytes_limit`` payload bytes it drops
the message and reports a ``SlowConsumerError`` through the connection's error callback, once
per dropped message. :class:`Drops` counts them by subscription and logs at most one warning per
subscription every ``log_every_s`` (with the count since the last one): a flood costs a counter,
never a log line per message.

:func:`pending_limits` turns one memory budget into nats-py's two limits, so that the payloads
and the per-message overhead together stay within it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from harmony_fleet.errors import ConfigError

log = logging.getLogger(__name__)

#: What a message waiting in nats-py's pending queue costs beyond its payload (the ``Msg``, its
#: subject string, the queue's slot): 288 bytes measured with nats-py 2.16 on CPython 3.11
#: (200,000 heartbeat-sized messages queued, RSS before and after), rounded up.
MESSAGE_OVERHEAD_BYTES = 512

#: The smallest budget that holds one message.
MIN_PENDING_BYTES = 2 * MESSAGE_OVERHEAD_BYTES


@dataclass(frozen=True)
class PendingLimits:
    """nats-py's two limits for one subscription."""

    msgs: int
    bytes: int


def pending_limits(budget_bytes: int) -> PendingLimits:
    """Limits under which a subscription's pending queue stays within ``budget_bytes``.

    Half the budget for the payloads (``pending_bytes_limit``: nats-py drops a message that
    would reach it), half for the per-message overhead (``pending_msgs_limit`` messages of
    :data:`MESSAGE_OVERHEAD_BYTES`): ``bytes + msgs * overhead <= budget``, whatever the size of
    the messages (many tiny ones hit the count, a few 1 MiB ones the bytes).
    """
    if budget_bytes < MIN_PENDING_BYTES:
        raise ConfigError(
            f"a pending budget of {budget_bytes} bytes holds no message: "
            f"give at least {MIN_PENDING_BYTES}"
        )
    half = budget_bytes // 2
    return PendingLimits(msgs=half // MESSAGE_OVERHEAD_BYTES, bytes=half)


def subscription_label(sub_subject: str, msg_subject: str) -> str:
    """The name a drop is counted under: the subscription's subject; for a JetStream delivery
    (an ``_INBOX`` subscription: a KV watch) the stream's subject prefix, e.g. ``$KV.bucket``."""
    if not sub_subject.startswith("_INBOX."):
        return sub_subject
    return ".".join(msg_subject.split(".")[:2]) or sub_subject


class Drops:
    """Messages dropped by nats-py, counted by subscription; warnings rate-limited."""

    def __init__(
        self, *, log_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.counts: Counter[str] = Counter()
        self.log_every_s = log_every_s
        self._clock = clock
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, sub_subject: str, msg_subject: str) -> bool:
        """Count one dropped message; True when it was logged (the first of a window)."""
        label = subscription_label(sub_subject, msg_subject)
        self.counts[label] += 1
        self._unlogged[label] += 1
        now = self._clock()
        last = self._logged_at.get(label)
        if last is not None and now - last < self.log_every_s:
            return False
        self._logged_at[label] = now
        log.warning(
            "slow consumer: messages dropped (pending limit reached)",
            extra={
                "subscription": label,
                "dropped": self._unlogged.pop(label),
                "dropped_total": self.counts[label],
            },
        )
        return True
