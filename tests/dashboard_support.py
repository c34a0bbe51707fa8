"""The operator's HTTP side in tests: an operator with the dashboard on a free port, a token,
scrapes parsed with prometheus_client's own parser, and a way to read the URL a ``fleet
operator --http`` process logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from harmony_fleet.adapters.nats.connection import NatsOptions
from harmony_fleet.contracts import Heartbeat, Role, encode
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.http.server import HttpOptions, HttpServer
from harmony_fleet.operator.http.tokens import new_token
from harmony_fleet.operator.runtime import Operator, OperatorConfig
from tests.helpers import eventually


def token_file(path: Path) -> tuple[Path, str]:
    token = new_token()
    path.write_text(f"# test\n{token}\n")
    path.chmod(0o600)
    return path, token


@dataclass
class Dashboard:
    operator: Operator
    server: HttpServer
    token: str

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, *, token: str | None = "") -> tuple[int, Any]:
        """GET ``path`` with the dashboard's token (``token=None``: without any)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token or self.token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + path, headers=headers, allow_redirects=False) as r,
        ):
            body = await r.text()
            if r.content_type == "application/json":
                return r.status, json.loads(body)
            return r.status, body

    async def metrics(self) -> dict[str, float]:
        """Every sample of one scrape, by name and labels (``name{k=v,...}``)."""
        status, text = await self.get("/metrics")
        assert status == 200, text
        return samples(text)


def samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@contextlib.asynccontextmanager
async def dashboard(
    options: NatsOptions, tmp: Path, *, admit: Admit = Admit.ANY
) -> AsyncIterator[Dashboard]:
    """An in-process operator with the HTTP extension on a free loopback port."""
    path, token = token_file(tmp / "tokens")
    server = HttpServer(HttpOptions(port=0, token_file=path, tick_s=0.1))
    operator = Operator(
        OperatorConfig(
            nats=options,
            presence=PresencePolicy(missed=3, grace_s=0.5, refresh_s=2.0),
            flush_interval_s=0.1,
            admit=admit,
        ),
        extensions=[server],
    )
    await server.start(operator)
    task = asyncio.ensure_future(operator.run())
    try:
        await asyncio.wait_for(operator.ready.wait(), 15)
        yield Dashboard(operator, server, token)
    finally:
        operator.stop.set()
        await asyncio.wait_for(task, 15)
        await server.close()


def heartbeat(device: str, version: str = "1.0.0", *, seq: int = 1, **labels: str) -> bytes:
    return encode(
        Heartbeat(
            device_id=device,
            instance_id=uuid.uuid5(uuid.NAMESPACE_DNS, device).hex,
            agent_version=version,
            role=Role.MAIN,
            seq=seq,
            sent_at=time.time(),
            uptime_s=1.0,
            interval_s=0.5,
            labels=labels,
        )
    )


async def logged_url(log_file: Path, timeout: float = 60) -> str:
    """The URL a ``fleet operator --http`` process logged (``--log-json``) when it listened."""

    def find() -> str | None:
        if not log_file.exists():
            return None
        for line in log_file.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("msg") == "dashboard listening":
                    return str(record["url"])
        return None

    return str(await eventually(find, timeout=timeout, what=f"the dashboard URL in {log_file}"))
