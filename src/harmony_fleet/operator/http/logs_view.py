"""A device's last log lines for its page, read from the log stream (``FLEET_LOGS``)."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.adapters.nats.logstream import EndOfHistory, LogFeed, Received

log = logging.getLogger(__name__)

#: How far back a device page looks, and how many lines it shows at most.
SINCE_S = 3600.0
MAX_LINES = 200


async def last_lines(
    nc: NatsClient, device: str, *, limit: int = 50, since_s: float = SINCE_S
) -> list[dict[str, Any]]:
    """The last ``limit`` lines ``device`` shipped in the last ``since_s`` seconds, oldest first
    (history only: the page asks again when it wants newer ones)."""
    lines: deque[dict[str, Any]] = deque(maxlen=max(1, min(limit, MAX_LINES)))
    async with LogFeed(nc, device, since=time.time() - since_s) as feed:
        async for event in feed.events(follow=False, idle_s=2.0):
            if isinstance(event, EndOfHistory):
                break
            if isinstance(event, Received):
                line = event.line
                lines.append(
                    {
                        "ts": line.ts,
                        "level": line.level.value,
                        "source": line.source,
                        "instance_id": line.instance_id,
                        "version": line.agent_version,
                        "role": line.role.value,
                        "msg": line.msg,
                    }
                )
    return list(lines)
