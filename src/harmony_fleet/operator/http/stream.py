"""Server-sent events: the page's live updates without reload.

One :class:`EventHub` per server. Publishing encodes a message once and puts it, without
waiting, on each connected page's bounded queue; a page that falls that far behind is cut off
(its ``EventSource`` reconnects by itself and the page reloads its data), so a slow browser
never holds the operator up. Nothing is encoded while no page is connected.

Message names: ``overview`` (the counts, when they change), ``devices`` (the rows that changed
since the last tick), ``upgrade`` (a device's upgrade timeline, at each phase change, at once),
``event`` (a fleet event), ``rollouts`` (when they change), ``hello`` (on connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

#: Messages a page may have waiting before it is cut off.
QUEUE_SIZE = 512
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0

_CLOSE = b""


def frame(name: str, data: Any) -> bytes:
    """One SSE message (``data`` as one line of JSON)."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventHub:
    def __init__(self, *, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self.clients: set[asyncio.Queue[bytes]] = set()
        self.cut_off = 0
        self.sent = 0

    def __len__(self) -> int:
        return len(self.clients)

    def publish(self, name: str, data: Any) -> None:
        if not self.clients:
            return
        message = frame(name, data)
        for queue in list(self.clients):
            try:
                queue.put_nowait(message)
                self.sent += 1
            except asyncio.QueueFull:
                self.clients.discard(queue)
                self.cut_off += 1
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(_CLOSE)

    async def close_all(self) -> None:
        for queue in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_CLOSE)
        self.clients.clear()

    async def handle(self, request: web.Request, hello: Any) -> web.StreamResponse:
        """Serve one page's stream until it goes away, is cut off, or the server stops."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue(self.queue_size)
        self.clients.add(queue)
        try:
            await response.write(b"retry: 2000\n\n" + frame("hello", hello))
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    message = b": keepalive\n\n"
                if message == _CLOSE:
                    break
                await response.write(message)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.clients.discard(queue)
        return response
