"""Was this message published by a client, or delivered by JetStream from stored data?

Anyone allowed to create a consumer or make a direct get (a viewer, docs/security.md) names
where JetStream sends the answer: a consumer's deliver subject, a pull request's or a direct
get's reply subject. JetStream sends it as the account, past every publish permission, so a
viewer can have stored bytes (a log line a device wrote, shaped like a command or a heartbeat)
delivered to ``fleet.B.cmd`` or ``fleet.B.heartbeat``. What nats-server 2.15 sends, measured
(``tests/security/test_viewer_deliveries.py``):

=============================================  ==============================================
how                                            what the subscriber sees
=============================================  ==============================================
push consumer (ack none, explicit or all)      the stored message's *own* subject, reply
                                               ``$JS.ACK.<stream>.<consumer>...``, no headers
pull consumer (``CONSUMER.MSG.NEXT``)          the same
direct get (``DIRECT.GET``) with that reply    the deliver subject, no reply, headers
                                               ``Nats-Stream``, ``Nats-Subject``,
                                               ``Nats-Sequence``, ``Nats-Time-Stamp``
``STREAM.MSG.GET``, ``CONSUMER.INFO`` ...      a JetStream API response (JSON that is no
                                               fleet message), no reply, no headers
idle heartbeats, flow control                  no body, a ``Status`` header
=============================================  ==============================================

A push consumer delivers only while its deliver subject has a subscriber of that very subject
(the operator's ``fleet.*.heartbeat`` alone gets nothing); B's agent subscribes to its own
command subject always, and to its own heartbeat subject while it watches a candidate, and then
every subscriber of the subject, the operator included, gets the delivery.

Fleet messages on those subjects (heartbeats, commands) never carry headers, and their reply,
when there is one, is an inbox. :func:`from_jetstream` says which is which; the receivers drop
what JetStream delivered and count it as a security event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Reply subjects of JetStream's deliveries (acks, flow control) start with this.
JS_REPLY_PREFIX = "$JS."


def from_jetstream(reply: str | None, headers: Mapping[str, str] | None) -> bool:
    """True when a message on a heartbeat or command subject was delivered by JetStream (or
    carries headers, which no fleet sender sets there)."""
    return bool(headers) or bool(reply and reply.startswith(JS_REPLY_PREFIX))
