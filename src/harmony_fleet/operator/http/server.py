"""The operator's HTTP server: probes, ``/metrics``, the JSON API, the dashboard, its events.

:class:`HttpServer` is an operator ``Extension`` (``fleet operator --http HOST:PORT``): called
with the connected client once the registry is loaded, it serves until the operator stops.
``fleet operator`` starts it earlier (:meth:`HttpServer.start`) so that the probes answer while
the operator is still connecting: ``/readyz`` is 503 until NATS is connected and the registry
loaded.

Routes (all ``GET``; every one but the probes needs a token, :mod:`.tokens`):

| path | what |
|---|---|
| ``/healthz`` | 200 while the process serves (liveness) |
| ``/readyz`` | 200 when connected, loaded, holding the operator lease; else 503, and why |
| ``/metrics`` | Prometheus text format (:mod:`.metrics`) |
| ``/api/overview`` | counts by state, version, upgrade phase; security events |
| ``/api/devices?q=&state=&version=&offset=&limit=`` | the device table |
| ``/api/devices/{id}`` | one device: labels, instances, upgrade timelines with phase durations |
| ``/api/devices/{id}/logs?limit=`` | its last log lines (the log stream) |
| ``/api/upgrades`` | every device's latest upgrade, in flight first |
| ``/api/rollouts`` | rollouts with progress per wave |
| ``/api/events`` | recent fleet events |
| ``/api/stream`` | server-sent events (:mod:`.stream`) |
| ``/``, ``/static/…`` | the dashboard (static files shipped in the package) |

Work on the operator's loop is bounded: a request reads memory (:mod:`.views`); a tick
(``tick_s``) diffs the registry for events and, only while a page is connected, pushes what
changed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from harmony_fleet._tasks import wait_event
from harmony_fleet.adapters.nats.connection import NatsClient
from harmony_fleet.contracts import device_id as valid_device_id
from harmony_fleet.errors import FleetError, InvalidMessage
from harmony_fleet.operator.http import views
from harmony_fleet.operator.http.logs_view import last_lines
from harmony_fleet.operator.http.metrics import Metrics
from harmony_fleet.operator.http.rollout_view import RolloutView
from harmony_fleet.operator.http.stream import EventHub
from harmony_fleet.operator.http.timeline import Timeline
from harmony_fleet.operator.http.tokens import COOKIE, TokenFile, bearer
from harmony_fleet.operator.runtime import Operator

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
STATIC = resources.files("harmony_fleet.operator.http") / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: A device page's rows pushed on one tick at most; more changed: the page reloads its list.
MAX_PUSHED_ROWS = 200


@dataclass(frozen=True, kw_only=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    """0: any free port (:attr:`HttpServer.url` says which)."""
    token_file: Path
    tick_s: float = 1.0


class HttpServer:
    """See the module docstring."""

    __name__ = "http"

    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        self.tokens = TokenFile(options.token_file)
        self.hub = EventHub()
        self.timeline = Timeline()
        self.rollouts = RolloutView()
        self.operator: Operator | None = None
        self.metrics: Metrics | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._overview: dict[str, Any] | None = None
        self._rollouts_seen: list[dict[str, Any]] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, operator: Operator) -> str:
        """Listen (once); return the base URL. Safe to call before the operator connects."""
        if self._runner is not None:
            return self.url
        self.operator = operator
        self.metrics = Metrics(operator, self.rollouts, lambda: len(self.hub))
        operator.registry.add_upgrade_listener(self.timeline.on_upgrade)
        self.timeline.step_observers.append(self.metrics.on_step)
        self.timeline.step_observers.append(self._push_upgrade)
        self.timeline.event_observers.append(lambda e: self.hub.publish("event", e.to_json()))
        runner = web.AppRunner(self._app(), shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        host = self.options.host
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        log.info("dashboard listening", extra={"url": self.url})
        return self.url

    async def close(self) -> None:
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __call__(self, operator: Operator, nc: NatsClient) -> None:
        await self.start(operator)
        try:
            while not operator.stop.is_set():
                try:
                    await self.tick(operator, nc)
                except Exception:
                    log.exception("dashboard tick failed")
                await wait_event(operator.stop, self.options.tick_s)
        finally:
            await self.close()

    async def tick(self, operator: Operator, nc: NatsClient) -> None:
        """Fleet events from the registry's changes; pushes to connected pages."""
        registry = operator.registry
        security = registry.security.counts.copy()
        if operator.coordinator.key_mismatches:
            security["key_mismatch"] = operator.coordinator.key_mismatches
        self.timeline.scan(registry.devices, security)
        rollouts = await self.rollouts.refresh(nc)
        if not len(self.hub):
            self._rows.clear()
            self._overview = self._rollouts_seen = None
            return
        overview = self._overview_json()
        if overview != self._overview:
            self._overview = overview
            self.hub.publish("overview", overview)
        if rollouts != self._rollouts_seen:
            self._rollouts_seen = rollouts
            self.hub.publish("rollouts", rollouts)
        changed = []
        for state in registry.devices.values():
            up = state.upgrade
            sig = (state.online, state.current_version, up.phase if up else None, id(up))
            if self._rows.get(state.device_id) != sig:
                self._rows[state.device_id] = sig
                changed.append(state)
        if len(self._rows) > len(registry.devices):
            for gone in [d for d in self._rows if d not in registry.devices]:
                del self._rows[gone]
        if len(changed) > MAX_PUSHED_ROWS:
            self.hub.publish("devices", {"reload": True, "changed": len(changed)})
        elif changed:
            self.hub.publish("devices", {"rows": [views.device_summary(s) for s in changed]})

    def _push_upgrade(self, track: Any, _step: Any) -> None:
        self.hub.publish("upgrade", track.to_json(time.time()))

    # -- the app ------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        get = app.router.add_get
        get("/healthz", self._healthz)
        get("/readyz", self._readyz)
        get("/metrics", self._metrics)
        get("/api/overview", self._api_overview)
        get("/api/devices", self._api_devices)
        get("/api/devices/{device}", self._api_device)
        get("/api/devices/{device}/logs", self._api_logs)
        get("/api/upgrades", self._api_upgrades)
        get("/api/rollouts", self._api_rollouts)
        get("/api/events", self._api_events)
        get("/api/stream", self._api_stream)
        get("/", self._page)
        get("/static/{name}", self._static)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await self._secured(await handler(request))
        presented = bearer(request.headers.get("Authorization")) or request.cookies.get(COOKIE)
        if not self.tokens.allows(presented):
            query = request.query.get("token")
            if query is not None and self.tokens.allows(query) and request.path == "/":
                # A person opening the printed URL: keep the token in a cookie, drop it from
                # the address bar and the history.
                found = web.HTTPSeeOther("/")
                found.set_cookie(COOKIE, query, httponly=True, samesite="Strict", path="/")
                raise found
            log.debug("http: refused", extra={"path": request.path[:200]})
            raise web.HTTPUnauthorized(
                text="401: a token is needed (Authorization: Bearer TOKEN, or open /?token=TOKEN)",
                headers={"WWW-Authenticate": 'Bearer realm="harmony-fleet"'},
            )
        return await self._secured(await handler(request))

    @staticmethod
    async def _secured(response: web.StreamResponse) -> web.StreamResponse:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _op(self) -> Operator:
        assert self.operator is not None
        return self.operator

    def _connected(self) -> bool:
        nc = self._op().nc
        return nc is not None and nc.is_connected

    def _overview_json(self) -> dict[str, Any]:
        op = self._op()
        return views.overview(op.registry, op.coordinator, connected=self._connected())

    # -- handlers -----------------------------------------------------------------------------
    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        reasons = []
        if not self._connected():
            reasons.append("NATS not connected")
        op = self._op()
        if not op.ready.is_set():
            # A standby (another operator holds the lease, ADR-023) has loaded its registry
            # but does no leader-only work: it is not ready either.
            loaded = op.devices_kv is not None
            reasons.append("waiting for the operator lease" if loaded else "registry not loaded")
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def _metrics(self, _request: web.Request) -> web.Response:
        assert self.metrics is not None
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _api_overview(self, _request: web.Request) -> web.Response:
        return web.json_response(self._overview_json())

    async def _api_devices(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            offset, limit = int(q.get("offset", "0")), int(q.get("limit", str(views.MAX_LIST)))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="offset and limit are integers") from exc
        return web.json_response(
            views.device_list(
                self._op().registry,
                query=q.get("q", "")[:200],
                state=q.get("state", ""),
                version=q.get("version", "")[:100],
                offset=max(0, offset),
                limit=limit,
            )
        )

    def _device(self, request: web.Request) -> str:
        try:
            return valid_device_id(request.match_info["device"])
        except InvalidMessage as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc

    async def _api_device(self, request: web.Request) -> web.Response:
        device = self._device(request)
        state = self._op().registry.devices.get(device)
        if state is None:
            raise web.HTTPNotFound(text=f"no device {device!r} in the registry")
        return web.json_response(views.device_detail(state, self.timeline, time.time()))

    async def _api_logs(self, request: web.Request) -> web.Response:
        device = self._device(request)
        nc = self._op().nc
        if nc is None or not nc.is_connected:
            raise web.HTTPServiceUnavailable(text="NATS not connected")
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="limit is an integer") from exc
        try:
            lines = await last_lines(nc, device, limit=limit)
        except FleetError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from exc
        return web.json_response({"device_id": device, "lines": lines})

    async def _api_upgrades(self, _request: web.Request) -> web.Response:
        op = self._op()
        return web.json_response(
            views.upgrades(op.registry, op.coordinator, self.timeline, time.time())
        )

    async def _api_rollouts(self, _request: web.Request) -> web.Response:
        nc = self._op().nc
        if nc is not None and nc.is_connected:
            await self.rollouts.refresh(nc)
        return web.json_response({"rollouts": self.rollouts.rollouts})

    async def _api_events(self, _request: web.Request) -> web.Response:
        return web.json_response({"events": [e.to_json() for e in reversed(self.timeline.events)]})

    async def _api_stream(self, request: web.Request) -> web.StreamResponse:
        self._overview = None  # the next tick pushes the counts to everyone, the new page too
        return await self.hub.handle(request, {"at": time.time()})

    async def _page(self, _request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    @staticmethod
    def _file(name: str) -> web.Response:
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in types:
            raise web.HTTPNotFound()
        resource = STATIC / name
        if not resource.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=resource.read_bytes(), content_type=types[suffix], charset="utf-8")
