"""The aiohttp transport (``http_backend="aiohttp"``): httpx's API over aiohttp's pool.

httpx stays the SDK's HTTP API (requests, redirects handled hop by hop, errors), and
`httpx-aiohttp` carries the bytes through an aiohttp ``ClientSession``, which costs
far less CPU per request than httpcore's pool (docs/benchmarks.md). aiohttp runs on
asyncio only: under trio the request fails with a `ConfigurationError` that says so.

Its errors are mapped here, not by `httpx-aiohttp`'s own table, because billing
safety depends on it: a connection the server dropped after the request was sent
must read as "may have been processed" (httpx's ``RemoteProtocolError`` /
``ReadError``), and only a failure to connect as "not sent" (``ConnectError``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from httpx._config import DEFAULT_LIMITS

from ._errors import ConfigurationError
from ._transport import Stateless

if TYPE_CHECKING:
    from httpx._types import CertTypes
    from httpx_aiohttp import AiohttpTransport

__all__ = ["AIOHTTP_MISSING", "make_aiohttp_client"]

AIOHTTP_MISSING = (
    "http_backend='aiohttp' needs the 'aiohttp' extra: pip install 'freepik-bg[aiohttp]'"
)


def _httpx_error_for(exc: BaseException) -> type[httpx.TransportError] | None:
    """The httpx error that says what `exc` (from aiohttp) means for billing."""
    import aiohttp

    if isinstance(exc, (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)):
        return httpx.ProxyError
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS: nothing sent
        return httpx.ConnectError
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        # A body cut short, or no answer at all: as httpx's own transport says it.
        return httpx.RemoteProtocolError
    if isinstance(exc, aiohttp.ClientError):  # payload, reset, ...: may have been processed
        return httpx.ReadError
    return None


def _remapped(exc: httpx.TransportError) -> httpx.TransportError:
    cause = exc.__cause__
    kind = _httpx_error_for(cause) if cause is not None else None
    if kind is None or type(exc) is kind:
        return exc
    error = kind(str(exc) or str(cause))
    error.__cause__ = cause
    return error


class _Body(httpx.AsyncByteStream):
    """The response body, with its errors mapped as the request's are."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            raise _remapped(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._inner.aclose()


def _transport_class() -> type[AiohttpTransport]:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    class Transport(AiohttpTransport):
        def get_client(self) -> aiohttp.ClientSession:
            # As httpx-aiohttp builds it (we set no unix socket or local address), but
            # with aiohttp's cookie jar off: our pools keep no cookies (`Stateless`).
            limit = self.limits.max_connections
            connector = aiohttp.TCPConnector(
                keepalive_timeout=self.limits.keepalive_expiry,
                ssl=self.ssl_context,
                limit=100 if limit is None else limit,  # aiohttp's default when unset
            )
            return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise ConfigurationError(
                    "http_backend='aiohttp' runs under asyncio only; under trio, "
                    "use http_backend='httpx' (the default)"
                ) from None
            try:
                response = await super().handle_async_request(request)
            except httpx.TransportError as exc:
                raise _remapped(exc) from exc.__cause__
            assert isinstance(response.stream, httpx.AsyncByteStream)
            response.stream = _Body(response.stream)
            return response

    return Transport


def make_aiohttp_client(**kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose transports (direct and proxied) are aiohttp's.

    Takes `httpx.AsyncClient`'s arguments. Raises `ConfigurationError` when the
    ``aiohttp`` extra is not installed.
    """
    try:
        from httpx_aiohttp import HttpxAiohttpClient
    except ImportError:
        raise ConfigurationError(AIOHTTP_MISSING) from None
    Transport = _transport_class()

    class Client(Stateless, HttpxAiohttpClient):
        # httpx builds its transports here, the proxied ones (proxy=, HTTPS_PROXY)
        # included: each is the error-mapping aiohttp transport above.
        def _init_transport(
            self,
            verify: ssl.SSLContext | str | bool = True,
            cert: CertTypes | None = None,
            trust_env: bool = True,
            http1: bool = True,
            http2: bool = False,
            limits: httpx.Limits = DEFAULT_LIMITS,
            transport: httpx.AsyncBaseTransport | None = None,
            **kwargs: Any,
        ) -> httpx.AsyncBaseTransport:
            if transport is not None:
                return transport
            return Transport(verify=verify, cert=cert, trust_env=trust_env, limits=limits)

        def _init_proxy_transport(
            self,
            proxy: httpx.Proxy,
            verify: ssl.SSLContext | str | bool = True,
            cert: CertTypes | None = None,
            trust_env: bool = True,
            http1: bool = True,
            http2: bool = False,
            limits: httpx.Limits = DEFAULT_LIMITS,
            **kwargs: Any,
        ) -> httpx.AsyncBaseTransport:
            return Transport(
                verify=verify, cert=cert, trust_env=trust_env, limits=limits, proxy=proxy
            )

    return Client(**kwargs)
