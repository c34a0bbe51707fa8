"""The log stream and `fleet logs` against hostile input: garbage, oversized, NATS unreachable."""

from __future__ import annotations

import json
from pathlib import Path

import nats.js.errors
import pytest
from logs_support import json_lines, stored
from tests.helpers import run_fleet

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.logstream import STREAM, LogStreamLimits
from harmony_fleet.adapters.nats.provision import ensure_log_stream
from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.contracts import LOG_LINE, LogLevel, LogLine, Role, encode
from harmony_fleet.contracts.logs import LOG_LINE_MAX_BYTES, log_subject
from harmony_fleet.errors import InvalidMessage

DEVICE = "edge-junk"


def line(msg: str, *, seq: int = 1, source: str = "agent") -> LogLine:
    return LogLine(
        device_id=DEVICE,
        instance_id="0123456789abcdef0123456789abcdef",
        agent_version="1.0.0",
        role=Role.MAIN,
        source=source,
        seq=seq,
        ts=1700000000.0 + seq,
        level=LogLevel.INFO,
        logger="test",
        msg=msg,
    )


async def test_garbage_is_skipped_and_said_so_oversized_is_refused(
    nats_server: EmbeddedNats, nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_log_stream(js)
    subject = log_subject(DEVICE, "agent")
    await nc.publish(subject, encode(line("before", seq=1)))
    await nc.publish(subject, b"this is not json")
    await nc.publish(subject, b'{"v": 1, "device_id": "edge-junk"}')
    bad_source = {**json.loads(encode(line("x"))), "source": "a.b"}
    await nc.publish(subject, json.dumps(bad_source).encode())
    await nc.publish(subject, encode(line("after", seq=2)))

    huge = encode(line("x" * (LOG_LINE_MAX_BYTES + 100), seq=3))
    with pytest.raises(nats.js.errors.BadRequestError, match="exceeds maximum"):
        await js.publish(subject, huge)  # the stream refuses it (max_msg_size)...
    with pytest.raises(InvalidMessage, match="exceeds"):
        LOG_LINE.decode(huge)  # ...and so would every reader, before parsing

    out = run_fleet("logs", DEVICE, "--json", "--nats", nats_server.url)
    assert out.returncode == 0, out.stderr
    assert [row["msg"] for row in json_lines(out.stdout)] == ["before", "after"]
    errors = out.stderr.splitlines()
    assert len(errors) == 4
    prefix = f"fleet: skipped malformed log message on {subject}"
    assert all(e.startswith(prefix) for e in errors[:3])
    assert "$.source" in errors[2]
    assert errors[3] == "fleet: skipped 3 malformed log message(s) in all"

    nats_server.stop()
    down = run_fleet("logs", DEVICE, "--nats", nats_server.url)
    assert down.returncode == 69
    assert len(down.stderr.splitlines()) == 1 and "cannot reach NATS" in down.stderr


async def test_the_stream_keeps_each_source_within_its_limit_and_is_never_reconfigured(
    nats_server: EmbeddedNats, nc: NatsClient
) -> None:
    js = nc.jetstream()
    await js.delete_stream(STREAM)  # the bootstrap made it with the defaults: make it again
    info = await ensure_log_stream(js, LogStreamLimits(max_msgs_per_subject=3))
    assert info.config.max_msgs_per_subject == 3
    defaults = LogStreamLimits()
    assert info.config.max_age == defaults.max_age_s == 7 * 86400
    assert info.config.max_msg_size == LOG_LINE_MAX_BYTES
    # A second creator with other limits gets the existing stream as it is.
    again = await ensure_log_stream(js, defaults)
    assert again.config.max_msgs_per_subject == 3

    for seq in range(1, 6):
        await nc.publish(log_subject(DEVICE, "agent"), encode(line(f"a{seq}", seq=seq)))
    for seq in range(1, 3):
        await nc.publish(
            log_subject(DEVICE, "unit.web"), encode(line(f"u{seq}", seq=seq, source="unit.web"))
        )
    await nc.publish(log_subject("other", "agent"), b"not this device")
    await nc.flush()
    lines, skipped = await stored(nc, DEVICE)
    assert sorted(x.msg for x in lines) == ["a3", "a4", "a5", "u1", "u2"]
    assert skipped == []
    state = (await js.stream_info(STREAM)).state
    assert state.messages == 6
