"""HTTP plumbing: who gets the API key, redirects, and httpx error translation.

httpx forwards custom headers across cross-origin redirects and an
``httpx.Auth`` cannot strip them, so the key is never a default header.
Instead every request asks `ApiKeyAuth` for its headers, which carry
the key only when the URL's origin (scheme, host, port) is the API's, and
redirects are followed here, hop by hop, with that question asked again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol, TypeVar

import httpx

from ._error_responses import ResponseBody, ResponseHead
from ._errors import (
    APIResponseValidationError,
    RedirectError,
)
from ._urls import Origin, origin_of
from ._version import __version__

__all__ = [
    "API_KEY_HEADER",
    "HTTPX_URLS",
    "HTTP_BACKENDS",
    "ApiKeyAuth",
    "Direct",
    "HttpBackend",
    "Reply",
    "Stateless",
    "Urls",
    "make_http_client",
    "new_request",
    "open_stream",
    "send",
    "urls_of",
]

API_KEY_HEADER = "x-freepik-api-key"
MAX_REDIRECTS = 5

HttpBackend = Literal["httpx", "aiohttp"]
HTTP_BACKENDS: tuple[HttpBackend, ...] = ("httpx", "aiohttp")

# Background removal of a 25-megapixel image can take a while, so reads get a
# generous budget; connecting should be quick. No pool timeout: a task waiting
# for a free connection is queueing, not failing.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=None)


class _NoCookies(httpx.Cookies):
    """A cookie jar that stays empty: nothing is taken from responses or added to requests."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set_cookie_header(self, request: httpx.Request) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("the pool a freepik_bg.AsyncClient creates keeps no cookies")

    def update(self, cookies: Any = None) -> None:  # type: ignore[override]  # as httpx
        # Shared by every pool: nothing may be added to it.
        raise TypeError("the pool a freepik_bg.AsyncClient creates keeps no cookies")


class Stateless:
    """Mixed into the pools we create: no cookie jar, and requests built directly.

    The service needs no cookie, and a result host's cookie is never kept, so it
    is never sent anywhere later either. httpx would parse every response for
    cookies through ``http.cookiejar`` (~40 µs a response), and ``build_request``
    merges a base URL, params and cookies that such a pool does not have:
    `new_request` builds requests for it without those steps.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty."""
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the pool a freepik_bg.AsyncClient creates keeps no cookies")


_NO_COOKIES = _NoCookies()


class Reply(ResponseHead, ResponseBody, Protocol):
    """What the client reads of a response: ``httpx.Response`` is one.

    A `Direct` pool answers with its own, lighter objects of this shape.
    """

    @property
    def url(self) -> object:
        """The URL that answered, as its pool's `Urls` parse it."""
        ...

    @property
    def is_success(self) -> bool: ...
    @property
    def is_redirect(self) -> bool: ...
    async def aread(self) -> bytes: ...
    def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


U = TypeVar("U")


class Urls(Protocol[U]):
    """How a pool's URLs are parsed, placed (origin) and joined (redirects).

    The key goes to a URL when its origin is the API's, and the request goes to
    that same parsed URL: what is checked is what is connected to.
    """

    def parse(self, text: str) -> U:
        """The URL; ``ValueError`` when it is not one."""
        ...

    def origin(self, url: U) -> Origin:
        """(scheme, host, port), lower-cased, with the default port filled in."""
        ...

    def join(self, base: U, location: str) -> U:
        """``location`` resolved against ``base``; ``ValueError`` when invalid."""
        ...


class _HttpxUrls:
    """httpx's URLs."""

    def parse(self, text: str) -> httpx.URL:
        try:
            return httpx.URL(text)
        except httpx.InvalidURL as exc:
            raise ValueError(str(exc)) from exc

    def origin(self, url: httpx.URL) -> Origin:
        return origin_of(url)

    def join(self, base: httpx.URL, location: str) -> httpx.URL:
        try:
            return base.join(location)
        except httpx.InvalidURL as exc:
            raise ValueError(str(exc)) from exc


HTTPX_URLS: Urls[httpx.URL] = _HttpxUrls()


class Direct(Stateless):
    """A pool we create that can send without building httpx's request and response.

    The aiohttp pool is one: httpx's objects (its URL parser alone costs ~50 µs a
    URL) and httpx-aiohttp's conversions cost it more CPU than aiohttp's own work
    (docs/benchmarks.md). Its URLs are its own (`urls`). It raises httpx's transport
    errors, mapped as its httpx transport maps them, so callers handle both alike.
    """

    urls: Urls[Any]

    async def send_direct(
        self,
        method: str,
        url: Any,
        headers: dict[str, str],
        content: bytes | None,
        *,
        stream: bool,
    ) -> Reply:
        """Send to ``url`` (one of `urls`) without redirects; with ``stream``, the body is
        left to read."""
        raise NotImplementedError


class _Pool(Direct, httpx.AsyncClient):
    """httpx's own pool, stateless, sending straight to its transport.

    ``send`` runs an auth flow, event hooks, redirect handling, cookie extraction and
    stream wrappers that such a pool has no use for: ~75 µs a request here. What it
    does that matters is kept: the proxy's transport (mounts), the timeouts (in the
    request), the request on the response and on its errors, httpx's log line.
    """

    urls = HTTPX_URLS

    async def send_direct(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        *,
        stream: bool,
    ) -> Reply:
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        request = new_request(self, method, url, headers, content)
        try:
            response = await self._transport_for_url(url).handle_async_request(request)
        except httpx.HTTPError as exc:
            exc.request = request
            raise
        response.request = request
        if _httpx_log.isEnabledFor(logging.INFO):
            _httpx_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                method,
                url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response


_httpx_log = logging.getLogger("httpx")


def urls_of(http: httpx.AsyncClient) -> Urls[Any]:
    """The URLs `send` takes for ``http``: its own for a `Direct` pool, else httpx's."""
    return http.urls if isinstance(http, Direct) else HTTPX_URLS


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: Any,
    headers: dict[str, str],
    content: bytes | None = None,
    *,
    stream: bool = False,
) -> Reply:
    """Send one request, redirects not followed; without ``stream`` the body is read.

    ``url`` is parsed by ``urls_of(http)``.
    """
    if isinstance(http, Direct):
        return await http.send_direct(method, url, headers, content, stream=stream)
    request = new_request(http, method, url, headers, content)
    return await http.send(request, stream=stream, follow_redirects=False)


def new_request(
    http: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    content: bytes | None = None,
) -> httpx.Request:
    """A request as ``http.build_request`` makes it; directly for the pools we create."""
    if not isinstance(http, Stateless):
        return http.build_request(method, url, headers=headers, content=content)
    merged = http.headers.copy()
    merged.update(headers)
    return httpx.Request(
        method, url, headers=merged, content=content, extensions={"timeout": http.timeout.as_dict()}
    )


def make_http_client(
    *,
    timeout: float | httpx.Timeout | None,
    max_connections: int,
    verify: Any,
    proxy: str | httpx.URL | None,
    backend: HttpBackend = "httpx",
) -> httpx.AsyncClient:
    """The pool an `AsyncClient` owns: no redirects followed by httpx, no default key header.

    `backend` ``"aiohttp"`` carries the requests over aiohttp (`freepik_bg._aiohttp`).
    """
    if max_connections < 1:
        raise ValueError("max_connections must be >= 1")
    if timeout is None:
        timeouts = DEFAULT_TIMEOUT
    elif isinstance(timeout, httpx.Timeout):
        timeouts = timeout
    else:
        timeouts = httpx.Timeout(float(timeout), pool=None)
    if backend not in HTTP_BACKENDS:
        raise ValueError(f"http_backend must be one of {', '.join(HTTP_BACKENDS)}, not {backend!r}")
    options: dict[str, Any] = {
        "timeout": timeouts,
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        "headers": {"user-agent": f"freepik-bg/{__version__} httpx/{httpx.__version__}"},
        "verify": verify,
        "proxy": proxy,
        "follow_redirects": False,
    }
    if backend == "aiohttp":
        from ._aiohttp import make_aiohttp_client

        return make_aiohttp_client(**options)
    return _Pool(**options)


class ApiKeyAuth:
    """Holds the API key and hands it out only to the API origin.

    Its ``repr`` shows a short fingerprint, never the key.
    """

    __slots__ = ("__key", "_origin")

    def __init__(self, api_key: str, api_url: httpx.URL) -> None:
        self.__key = api_key
        self._origin: Origin = origin_of(api_url)

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible tag to tell keys apart in logs."""
        return hashlib.sha256(self.__key.encode()).hexdigest()[:8]

    def allows(self, url: httpx.URL) -> bool:
        """Whether ``url`` is on the API origin."""
        return origin_of(url) == self._origin

    def headers_for(self, url: httpx.URL) -> dict[str, str]:
        """The key header when ``url`` is on the API origin, else nothing."""
        return self.headers_for_origin(origin_of(url))

    def headers_for_origin(self, origin: Origin) -> dict[str, str]:
        """The key header when ``origin`` is the API's, else nothing."""
        return {API_KEY_HEADER: self.__key} if origin == self._origin else {}

    def __repr__(self) -> str:
        return f"ApiKeyAuth(key=<redacted sha256:{self.fingerprint}>)"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("ApiKeyAuth cannot be pickled")


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    url: str,
    *,
    auth: ApiKeyAuth,
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncIterator[Reply]:
    """GET ``url`` as a stream, following redirects ourselves so the key stays home.

    Yields the final (non-redirect) response; it is closed on exit.
    """
    urls = urls_of(http)
    try:
        current = urls.parse(url)
    except ValueError as exc:
        raise APIResponseValidationError(
            f"the result link {url} is not a valid URL: {exc}"
        ) from exc
    seen = {str(current)}
    for _ in range(max_redirects + 1):
        key = auth.headers_for_origin(urls.origin(current))
        response = await send(http, "GET", current, key, stream=True)
        if not (response.is_redirect and "location" in response.headers):
            try:
                yield response
            finally:
                await response.aclose()
            return
        await response.aclose()
        try:
            target = urls.join(current, response.headers["location"])
        except ValueError as exc:
            raise RedirectError(f"invalid redirect location from {current}: {exc}") from exc
        scheme = urls.origin(target)[0]
        if scheme not in ("http", "https"):
            raise RedirectError(f"refusing redirect to a {scheme!r} URL")
        if str(target) in seen:
            raise RedirectError(f"redirect loop at {target}")
        seen.add(str(target))
        current = target
    raise RedirectError(f"more than {max_redirects} redirects from {url}")
