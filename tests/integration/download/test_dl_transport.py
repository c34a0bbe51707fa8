"""The wide-read transport: bigger socket reads than stock httpx, same answers."""

from __future__ import annotations

import httpx
from dl_helpers import Artifact, ScriptedServer, serve

from harmony_fleet.adapters.http.transport import make_transport


async def _pieces(client: httpx.AsyncClient, url: str) -> list[int]:
    sizes = []
    async with client.stream("GET", url) as response:
        async for piece in response.aiter_raw():
            sizes.append(len(piece))
    return sizes


async def test_reads_are_wider_than_stock_httpx(
    scripted: ScriptedServer, artifact: Artifact
) -> None:
    scripted.script = [serve(artifact.data), serve(artifact.data)]
    async with httpx.AsyncClient() as stock:
        stock_sizes = await _pieces(stock, scripted.url)
    async with httpx.AsyncClient(transport=make_transport()) as wide:
        wide_sizes = await _pieces(wide, scripted.url)
    assert sum(stock_sizes) == sum(wide_sizes) == artifact.size
    assert max(stock_sizes) <= 64 * 1024
    assert max(wide_sizes) > 64 * 1024
    assert len(wide_sizes) < len(stock_sizes)


async def test_keep_alive_reuses_the_connection(
    scripted: ScriptedServer, artifact: Artifact
) -> None:
    scripted.script = [serve(artifact.data), serve(artifact.data)]
    async with httpx.AsyncClient(transport=make_transport()) as client:
        for _ in range(2):
            assert sum(await _pieces(client, scripted.url)) == artifact.size
    assert len(scripted.requests) == 2
    assert scripted.connections == 1
