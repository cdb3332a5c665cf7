"""The aiohttp transport (``http_backend="aiohttp"``): httpx's API over aiohttp's pool.

The pool is an ``httpx.AsyncClient`` whose transports (direct and proxied) are
`httpx-aiohttp`'s, so ``AsyncClient.http_client`` stays httpx's API. The SDK's own
requests skip httpx's objects (`Direct`): ``send_direct`` asks httpx only which
transport (proxy) serves the URL, and sends on that transport's aiohttp session with
the same timeouts, proxy and error mapping, reading the answer as a `_Reply`. httpx's
request and response, and httpx-aiohttp's conversions, cost more CPU per request than
aiohttp's own work (docs/benchmarks.md). aiohttp runs on asyncio only: under trio the
request fails with a `ConfigurationError` that says so.

Its errors are mapped here, not by `httpx-aiohttp`'s own table, because billing
safety depends on it: a connection the server dropped after the request was sent
must read as "may have been processed" (httpx's ``RemoteProtocolError`` /
``ReadError``), and only a failure to connect as "not sent" (``ConnectError``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

import httpx
from httpx._config import DEFAULT_LIMITS

from ._errors import ConfigurationError
from ._transport import Direct, Reply
from ._urls import DEFAULT_PORTS, Origin

if TYPE_CHECKING:
    import aiohttp
    import yarl
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
    _scrub(exc)
    cause = exc.__cause__
    kind = _httpx_error_for(cause) if cause is not None else None
    if kind is None or type(exc) is kind:
        return exc
    error = kind(str(exc) or str(cause))
    error.__cause__ = cause
    return error


def _scrub(exc: BaseException) -> None:
    """Take the request's headers (the key among them) out of aiohttp's errors.

    An answer aiohttp cannot parse raises a ``ClientResponseError`` whose
    ``request_info`` holds the headers sent; it stays chained as a cause, and error
    reporters and Dask (tblib) print or pickle causes.
    """
    from aiohttp import RequestInfo
    from multidict import CIMultiDict, CIMultiDictProxy

    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen) and len(seen) < 10:
        seen.append(current)
        info = getattr(current, "request_info", None)
        if isinstance(info, RequestInfo) and info.headers:
            empty = CIMultiDictProxy(CIMultiDict[str]())
            clean = RequestInfo(info.url, info.method, empty, info.real_url)
            current.request_info = clean  # type: ignore[attr-defined]
            current.args = (clean, *current.args[1:])
        current = current.__cause__ or current.__context__


def _raise_mapped(exc: Exception, method: str, url: yarl.URL) -> NoReturn:
    """Raise `exc` (from aiohttp) as the httpx error it means, or as itself if none.

    The httpx error names the request as httpx's would, without its headers.
    """
    _scrub(exc)
    kind = _httpx_error_for(exc)
    if kind is None:
        raise exc
    request = httpx.Request(method, str(url))
    raise kind(str(exc) or type(exc).__name__, request=request) from exc


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            "http_backend='aiohttp' runs under asyncio only; under trio, "
            "use http_backend='httpx' (the default)"
        ) from None


class _Carrier(Protocol):
    """What `send_direct` asks of the transport httpx picked for a URL (ours)."""

    def session(self) -> aiohttp.ClientSession: ...
    def proxy_options(self) -> dict[str, Any]: ...


class _YarlUrls:
    """yarl's URLs: aiohttp's own, so a request's URL is parsed once (httpx's parser
    costs ~50 µs a URL, yarl's ~12)."""

    def parse(self, text: str) -> yarl.URL:
        import yarl

        url = yarl.URL(text)
        if not url.absolute:
            raise ValueError("not an absolute URL")
        return url

    def origin(self, url: yarl.URL) -> Origin:
        scheme = url.scheme.lower()
        return (scheme, (url.host or "").lower(), url.port or DEFAULT_PORTS.get(scheme, 0))

    def join(self, base: yarl.URL, location: str) -> yarl.URL:
        import yarl

        return base.join(yarl.URL(location))


_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class _Reply:
    """An aiohttp response, read as the client reads an ``httpx.Response`` (`Reply`)."""

    __slots__ = ("_content", "_method", "_response", "headers", "status_code", "url")

    def __init__(self, response: aiohttp.ClientResponse, method: str, url: yarl.URL) -> None:
        self._response = response
        self._method = method
        self._content: bytes | None = None
        self.status_code = response.status
        self.headers = response.headers
        # Redirects are never followed by aiohttp here: the URL asked is the one answering.
        self.url = url

    @property
    def reason_phrase(self) -> str:
        return self._response.reason or ""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in _REDIRECT_STATUSES and "location" in self.headers

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise httpx.ResponseNotRead()
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode(self._response.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self) -> bytes:
        if self._content is None:
            try:
                self._content = await self._response.read()
            except Exception as exc:
                _raise_mapped(exc, self._method, self.url)
        return self._content

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        if self._content is not None:
            yield self._content
            return
        try:
            async for chunk in self._response.content.iter_chunked(chunk_size or 65536):
                yield chunk
        except Exception as exc:
            _raise_mapped(exc, self._method, self.url)

    async def aclose(self) -> None:
        # As `async with` would: the connection goes back to the pool when the body was
        # read to its end, and is closed otherwise.
        await self._response.__aexit__(None, None, None)


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

        def session(self) -> aiohttp.ClientSession:
            """The session, made on first use as httpx-aiohttp makes it."""
            if not isinstance(self.client, aiohttp.ClientSession):
                self.client = self.get_client()
            return self.client

        def proxy_options(self) -> dict[str, Any]:
            """The proxy arguments of a request, as httpx-aiohttp passes them."""
            proxy = self.proxy
            if proxy is None:
                return {}
            return {
                "proxy": str(proxy.url),
                "proxy_auth": aiohttp.BasicAuth(*proxy.auth) if proxy.auth else None,
                "proxy_headers": proxy.headers,
            }

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            _require_asyncio()
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
    import aiohttp

    Transport = _transport_class()

    class Client(Direct, HttpxAiohttpClient):
        _timeouts: tuple[httpx.Timeout, aiohttp.ClientTimeout] | None = None

        urls = _YarlUrls()

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._by_origin: dict[Origin, httpx.AsyncBaseTransport] = {}

        async def send_direct(
            self,
            method: str,
            url: yarl.URL,
            headers: dict[str, str],
            content: bytes | None,
            *,
            stream: bool,
        ) -> Reply:
            # What the httpx-aiohttp transport does for this request, minus httpx's
            # objects: the same session (the proxy's, for a proxied URL), timeouts,
            # proxy and error mapping.
            _require_asyncio()
            transport = self._carrier_for(url)
            merged = dict(self.headers.items())
            # aiohttp asks for, and decodes, the encodings it supports.
            merged.pop("accept-encoding", None)
            merged.update(headers)
            try:
                response = await transport.session().request(
                    method,
                    url,
                    headers=merged,
                    data=content,
                    allow_redirects=False,
                    timeout=self._client_timeout(),
                    **transport.proxy_options(),
                )
            except Exception as exc:
                _raise_mapped(exc, method, url)
            reply = _Reply(response, method, url)
            if not stream:
                try:
                    await reply.aread()
                finally:
                    await reply.aclose()
            return reply

        def _carrier_for(self, url: yarl.URL) -> _Carrier:
            picked: httpx.AsyncBaseTransport | None
            if not self._mounts:  # no proxy at all: the usual case
                picked = self._transport
            else:
                # httpx picks the proxy (proxy=, HTTPS_PROXY, NO_PROXY) from the scheme,
                # host and port alone: asked once per origin.
                origin = self.urls.origin(url)
                picked = self._by_origin.get(origin)
                if picked is None:
                    if len(self._by_origin) >= 256:
                        self._by_origin.clear()
                    scheme, host, port = origin
                    where = httpx.URL(scheme=scheme, host=host, port=port)
                    picked = self._by_origin[origin] = self._transport_for_url(where)
            assert isinstance(picked, Transport)
            return cast(_Carrier, picked)

        def _client_timeout(self) -> aiohttp.ClientTimeout:
            timeout = self.timeout
            if self._timeouts is None or self._timeouts[0] is not timeout:
                # As httpx-aiohttp maps them: waiting for a pooled connection is
                # aiohttp's "connect"; aiohttp has no write timeout.
                self._timeouts = (
                    timeout,
                    aiohttp.ClientTimeout(
                        sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
                    ),
                )
            return self._timeouts[1]

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
