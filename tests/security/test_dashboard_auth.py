"""Attacks on the operator's HTTP side (``fleet operator --http``): without the token, or with a
wrong one, nothing but the two probes answers; the token never travels in an API URL; a token
taken out of the file stops working without a restart. The operator holds its own operator
credential against the secured server, as in production."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from harmony_fleet.adapters.nats.server import EmbeddedNats
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.http.tokens import COOKIE, new_token
from tests.dashboard_support import dashboard
from tests.security.support import tls_options

GUARDED = [
    "/",
    "/static/app.js",
    "/metrics",
    "/api/overview",
    "/api/devices",
    "/api/devices/edge-a",
    "/api/devices/edge-a/logs",
    "/api/upgrades",
    "/api/rollouts",
    "/api/events",
    "/api/stream",
]


async def status_of(url: str, **kwargs: object) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, allow_redirects=False, **kwargs) as r,  # type: ignore[arg-type]
    ):
        return r.status


async def test_without_the_token_or_with_a_wrong_one_only_the_probes_answer(
    nats_server: EmbeddedNats, creds: dict[str, Path], tmp_path: Path
) -> None:
    options = tls_options(nats_server, creds["operator"])
    async with dashboard(options, tmp_path, admit=Admit.ISSUED) as dash:
        wrong = new_token()
        refused = {}
        for path in GUARDED:
            url = dash.url + path
            refused[path] = (
                await status_of(url),
                await status_of(url, headers={"Authorization": f"Bearer {wrong}"}),
                await status_of(url, headers={"Authorization": f"Basic {dash.token}"}),
                await status_of(url, cookies={COOKIE: wrong}),
                await status_of(url + f"?token={wrong}"),
            )
        assert refused == {path: (401, 401, 401, 401, 401) for path in GUARDED}
        assert await status_of(dash.url + "/healthz") == 200
        assert await status_of(dash.url + "/readyz") == 200
        # With the token: every one answers (the stream is not read to its end here; edge-a is
        # not in the registry: 404, past the guard).
        answered = {
            path: await status_of(dash.url + path, headers=dash.auth())
            for path in GUARDED
            if path != "/api/stream"
        }
        assert answered == {
            path: 404 if path == "/api/devices/edge-a" else 200
            for path in GUARDED
            if path != "/api/stream"
        }


async def test_the_token_in_a_page_url_becomes_a_strict_cookie_never_in_an_api_url(
    nats_server: EmbeddedNats, creds: dict[str, Path], tmp_path: Path
) -> None:
    options = tls_options(nats_server, creds["operator"])
    async with dashboard(options, tmp_path, admit=Admit.ISSUED) as dash:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{dash.url}/?token={dash.token}", allow_redirects=False) as r,
        ):
            assert r.status == 303
            assert r.headers["Location"] == "/"
            cookie = r.headers["Set-Cookie"]
            assert f"{COOKIE}={dash.token}" in cookie
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
        assert await status_of(f"{dash.url}/api/devices?token={dash.token}") == 401
        assert await status_of(f"{dash.url}/metrics?token={dash.token}") == 401
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{dash.url}/api/overview", cookies={COOKIE: dash.token}) as r,
        ):
            assert r.status == 200
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer"


async def test_a_token_taken_out_of_the_file_stops_working_without_a_restart(
    nats_server: EmbeddedNats, creds: dict[str, Path], tmp_path: Path
) -> None:
    options = tls_options(nats_server, creds["operator"])
    async with dashboard(options, tmp_path, admit=Admit.ISSUED) as dash:
        old = dash.token
        assert (await dash.get("/api/overview"))[0] == 200
        new = new_token()
        path = dash.server.tokens.path
        path.write_text(f"{new}\n")
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock
        assert (await dash.get("/api/overview", token=old))[0] == 401
        assert (await dash.get("/api/overview", token=new))[0] == 200


@pytest.mark.parametrize("text", ["", "# nothing\n", "short\n", "two words here-but-long-enough\n"])
def test_a_token_file_without_a_usable_token_is_refused_at_start(tmp_path: Path, text: str) -> None:
    from harmony_fleet.errors import ConfigError
    from harmony_fleet.operator.http.tokens import TokenFile

    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ConfigError, match="token"):
        TokenFile(path)
