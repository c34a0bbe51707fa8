"""An httpx transport that reads the socket in large pieces, for bulk downloads.

Why: httpcore's HTTP/1.1 connection asks its network stream for 64 KiB per read, and under
asyncio the AnyIO stream resumes and pauses the transport around every read. For a bulk body
that per-read machinery, not hashing or the disk, is what limits throughput: measured here,
streaming a body through a stock ``AsyncClient`` ran at roughly a third of the speed of the same
client reading 1 MiB at a time (``docs/downloads.md`` has the figures). httpcore exposes the
network layer as a public, pluggable interface (``AsyncNetworkBackend``/``AsyncNetworkStream``),
so this module wraps httpcore's own AnyIO backend and widens each read to ``read_size``; h11
accepts whatever one read returns, so nothing else changes: same TLS, timeouts, pooling.

The one private touch is installing the pool into ``httpx.AsyncHTTPTransport`` (httpx offers no
``network_backend`` argument). If a future httpx changes that attribute, :func:`make_transport`
falls back to the stock transport: slower, never wrong.

The TLS context is built once per process and CA file (loading the CA bundle costs ~0.1 s) with
httpx's defaults, i.e. certificate and host name verification against certifi's bundle, plus
the system's trust store and the device's ``--artifact-ca`` bundle if it has one.
"""

# httpcore's network interface takes ``timeout`` arguments; we only pass them through.
# ruff: noqa: ASYNC109

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from harmony_fleet.adapters.http.policy import MIB
from harmony_fleet.errors import ConfigError

__all__ = ["make_transport"]


class _WideReadStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, read_size: int) -> None:
        self._inner = inner
        self._read_size = read_size

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, self._read_size), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _WideReadStream(inner, self._read_size)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _WideReadBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, read_size: int) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._read_size = read_size

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _WideReadStream(inner, self._read_size)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _WideReadStream(inner, self._read_size)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    context = httpx.create_ssl_context()  # certifi's roots, host names checked
    context.set_default_verify_paths()  # and the system's trust store
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"--artifact-ca {ca_file}: not a readable PEM CA bundle: {exc}"
            ) from exc
    return context


def make_transport(*, read_size: int = MIB, ca_file: str | None = None) -> httpx.AsyncHTTPTransport:
    """A transport like httpx's default one, reading up to ``read_size`` bytes per socket read.

    Server certificates are verified against certifi's roots, the system's trust store, and
    ``ca_file`` when given (``--artifact-ca``: a site's private CA for its artifact server).
    """
    context = _ssl_context(ca_file)
    transport = httpx.AsyncHTTPTransport(verify=context)
    if isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        limits = httpx.Limits()
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_WideReadBackend(read_size),
        )
    return transport
