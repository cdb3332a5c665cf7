"""The async client: submit an image, download its cutout at once."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode

import attrs
import httpx

from ._batch_api import BatchMethods
from ._config import (
    DEFAULT_BURST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RETRIES,
    ENDPOINT_PATH,
    resolve_api_key,
    resolve_base_url,
)
from ._error_responses import decode_body, gone_message, status_error
from ._errors import (
    APIResponseValidationError,
    FreepikError,
    LinkExpiredError,
    RateLimitError,
    SinkError,
)
from ._models import Cutout, RetryEvent, Size, check_size, utc_now
from ._ratelimit import Gate, RateGate
from ._retries import RetryHook, RetryPolicy, parse_retry_after, retry_call
from ._sinks import check_file_target, write_atomic
from ._stream import ImageStream
from ._transport import (
    ApiKeyAuth,
    HttpBackend,
    make_http_client,
    open_stream,
    send,
    urls_of,
)
from ._transport_errors import translate_transport_error
from ._urls import validate_image_url

__all__ = ["AsyncClient"]

logger = logging.getLogger("freepik_bg")

T = TypeVar("T")

_GONE_STATUSES = frozenset({403, 404, 410})


class AsyncClient(BatchMethods):
    """Asynchronous client for Freepik's remove-background API.

    It owns an httpx connection pool (or uses yours) and is meant to be
    shared: create one per application, use it from many tasks, close it at
    the end. Works under asyncio and trio.

    Freepik limits each API key (50 requests/s over 5 s, 10/s on average over
    2 minutes), not each task: give ``rate`` and every POST attempt of this
    client, from any task, retries included, waits on one shared limiter,
    and a 429 on any call holds back all of them for the server's
    ``Retry-After`` (or the backoff). A `batch` keeps its own ``rate`` too:
    both apply, so a batch goes no faster than the lower of the two.

    Args:
        api_key: your Freepik key; defaults to ``$FREEPIK_API_KEY``.
        base_url: defaults to ``$FREEPIK_BASE_URL``, then ``https://api.freepik.com``.
        timeout: seconds, or an ``httpx.Timeout``. Waiting for a pooled
            connection never times out: tasks beyond the pool just queue.
        max_retries: retries per request after the first attempt (default 5;
            0 disables retries).
        retry_ambiguous: retry POST failures the service may have billed
            (read timeouts, lost connections, 500/502/504). On by default:
            a lost result costs more than a rare double charge. Turn it off
            to never risk paying twice.
        http_client: an ``httpx.AsyncClient`` to use as is; we never close it.
        max_connections: size of the connection pool we create.
        max_download_bytes: refuse result files larger than this.
        verify: TLS verification (``True``, a CA bundle path, or an
            ``ssl.SSLContext``); only used when we create the pool.
        proxy: a proxy URL, when we create the pool (``HTTPS_PROXY`` and
            friends are honoured too).
        on_retry: callables given a [`RetryEvent`][freepik_bg.RetryEvent] before each retry.
        rate: POSTs per second for the whole client, shared by all its tasks
            (paced 2 % under it); ``None`` (the default) sets no limit.
        burst: how many POSTs may go at once before ``rate`` applies.
        gate: a `Gate` to pace POSTs with instead of ``rate``/``burst``: one
            shared beyond this client (``freepik_bg.dask`` passes a cluster-wide one).
        http_backend: what carries the requests of the pool we create: ``"httpx"``
            (httpcore, the default; asyncio and trio) or ``"aiohttp"`` (asyncio only,
            less CPU per request; needs ``pip install 'freepik-bg[aiohttp]'``).

    Raises:
        ValueError: ``rate`` is not a positive finite number or ``None``,
            ``burst`` is below 1, another size is out of range, or both
            ``rate`` and ``gate`` are given.

    Examples:
        ```python
        async with AsyncClient() as client:  # key from $FREEPIK_API_KEY
            cutout = await client.remove_background("https://example.com/shoe.jpg")
            await client.download_to(cutout, "shoe.png")
        ```

        One client for a web app, within Freepik's 10 requests/s per key:

        ```python
        async with AsyncClient(rate=10, burst=50) as client:
            ...  # serve requests with it
        ```
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry_ambiguous: bool = True,
        http_client: httpx.AsyncClient | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        verify: Any = True,
        proxy: str | httpx.URL | None = None,
        on_retry: RetryHook | Sequence[RetryHook] = (),
        rate: float | None = None,
        burst: int = DEFAULT_BURST,
        gate: Gate | None = None,
        http_backend: HttpBackend = "httpx",
    ) -> None:
        # RateGate validates both; without a rate, single calls keep no gate at all
        # (not even the shared 429 pause), exactly as before.
        own = RateGate(rate, burst)
        if gate is not None and rate is not None:
            raise ValueError("give either rate (and burst) or gate, not both")
        self._gate: Gate | None = gate if gate is not None else own if rate is not None else None
        self.base_url = resolve_base_url(base_url)
        self._auth = ApiKeyAuth(resolve_api_key(api_key), self.base_url)
        self._endpoint = self.base_url.copy_with(
            path=self.base_url.path.rstrip("/") + ENDPOINT_PATH
        )
        retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        if retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.retry_policy = RetryPolicy(max_retries=retries, retry_ambiguous=retry_ambiguous)
        self.max_download_bytes = max_download_bytes
        self._hooks = _hooks(on_retry)
        self._owns_http = http_client is None
        self._http = http_client or make_http_client(
            timeout=timeout,
            max_connections=max_connections,
            verify=verify,
            proxy=proxy,
            backend=http_backend,
        )
        # The endpoint as the pool's own URL type, parsed once.
        self._post_url = urls_of(self._http).parse(str(self._endpoint))

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={str(self.base_url)!r}, auth={self._auth!r})"

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The underlying httpx client."""
        return self._http

    @property
    def paces_posts(self) -> bool:
        """Whether this client paces its POSTs (``rate=`` or ``gate=`` was given).

        A batch with ``rate=None`` on a client that does not learns the server's
        rate from its 429s instead.
        """
        return self._gate is not None

    @property
    def is_closed(self) -> bool:
        """True once the underlying httpx client is closed."""
        return self._http.is_closed

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- submitting -------------------------------------------------------

    async def remove_background(
        self,
        image_url: str,
        *,
        on_retry: RetryHook | Sequence[RetryHook] = (),
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> Cutout:
        """Submit ``image_url`` and return the four result links.

        Retries per the client's policy; the result's ``attempts`` and
        ``ambiguous_retries`` say what that took. The links live 5 minutes:
        download straight away (or use `batch`, which does).

        Args:
            image_url: a public http(s) URL of a JPEG or PNG.
            on_retry: hooks for this call, after the client's own.
            before_attempt: awaited before every attempt, retries included
                (a shared rate limiter, say), after the client's own ``rate``
                gate; it may raise to stop retrying.

        Raises:
            InvalidRequestError: ``image_url`` is not an absolute http(s) URL
                (nothing is sent).
            BadRequestError: the service refused it, e.g. it could not fetch it.
            APIStatusError: any other error status (401, 402, 429 after retries, 5xx, ...).
            APIConnectionError: the service could not be reached, after retries.

        Examples:
            >>> async def main(client: AsyncClient) -> None:
            ...     cutout = await client.remove_background("https://example.com/shoe.jpg")
            ...     print(cutout.high_resolution)
        """
        url = validate_image_url(image_url)
        hooks = (*self._hooks, *_hooks(on_retry))
        gate = self._gate
        if gate is not None:
            # The pause comes first, so that the caller's hooks see it already set.
            hooks = (self._pause_on_429, *hooks)
            before_attempt = _after_gate(gate, before_attempt)
        cutout, attempts, ambiguous = await retry_call(
            lambda: self._post_once(url),
            operation="post",
            url=url,
            policy=self.retry_policy,
            hooks=hooks,
            before_attempt=before_attempt,
        )
        if attempts == cutout.attempts and ambiguous == cutout.ambiguous_retries:
            return cutout  # the usual first-attempt answer: no copy to make
        return attrs.evolve(cutout, attempts=attempts, ambiguous_retries=ambiguous)

    def _pause_on_429(self, event: RetryEvent) -> None:
        # Every task of the client shares one key's limit: when one is told to
        # wait, all wait, instead of each spending attempts on more 429s.
        if self._gate is not None and isinstance(event.error, RateLimitError):
            self._gate.pause(event.wait)

    async def _post_once(self, image_url: str) -> Cutout:
        headers = {
            "accept": "application/json",
            "content-type": "application/x-www-form-urlencoded",
            **self._auth.headers_for(self._endpoint),
        }
        # Encoded as httpx encodes data={...}, without its per-request merging.
        form = urlencode({"image_url": image_url}).encode()
        try:
            response = await send(self._http, "POST", self._post_url, headers, form)
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, what="POST remove-background") from exc
        received_at = utc_now()
        body = decode_body(response)
        logger.debug("POST remove-background -> %d", response.status_code)
        if not response.is_success:
            raise status_error(response, body, retry_after=parse_retry_after(response.headers))
        if isinstance(body, str) or body is None:
            raise APIResponseValidationError(
                "the service answered 200 with a body that is not JSON",
                status_code=response.status_code,
                body=body,
            )
        return Cutout.from_response(
            body, image_url=image_url, received_at=received_at, status_code=response.status_code
        )

    # -- downloading ------------------------------------------------------

    async def download(self, cutout: Cutout, size: Size = "high_resolution") -> bytes:
        """Download one rendition into memory and return its bytes.

        For large files prefer [`download_to`][freepik_bg.AsyncClient.download_to], which
        streams to disk.

        Raises:
            LinkExpiredError: the link answered 403, 404 or 410.
            InvalidImageError: the bytes are not a complete PNG/JPEG, or too large.
        """

        async def collect(chunks: AsyncIterator[bytes]) -> bytes:
            buffer = io.BytesIO()
            async for chunk in chunks:
                buffer.write(chunk)
            # getvalue() hands over the buffer without a copy when it can.
            return buffer.getvalue()

        return await self.download_with(cutout, collect, size=size)

    async def download_to(
        self,
        cutout: Cutout,
        path: str | os.PathLike[str],
        *,
        size: Size = "high_resolution",
    ) -> Path:
        """Stream one rendition into ``path`` atomically and return the path.

        The bytes go to a temp file beside ``path`` that is renamed into place
        once complete and valid: whatever fails, no partial file is left.

        Examples:
            ```python
            path = await client.download_to(cutout, "out/shoe.png")  # Path('out/shoe.png')
            ```
        """
        target = Path(path)
        return await self.download_with(
            cutout, lambda chunks: write_atomic(target, chunks), size=size
        )

    async def download_with(
        self,
        cutout: Cutout,
        consumer: Callable[[AsyncIterator[bytes]], Awaitable[T]],
        *,
        size: Size = "high_resolution",
        on_retry: RetryHook | Sequence[RetryHook] = (),
    ) -> T:
        """Stream one rendition into ``consumer`` and return what it returns.

        ``consumer`` receives validated chunks; if it is retried (a broken
        transfer), it is called again with a fresh stream, so it must discard
        what it got when iteration raises. Retries stop when the link expires.
        """
        link = cutout.link(check_size(size))

        async def once() -> T:
            try:
                async with open_stream(self._http, link, auth=self._auth) as response:
                    logger.debug("GET %s -> %d", response.url, response.status_code)
                    if response.status_code in _GONE_STATUSES:
                        raise LinkExpiredError(
                            gone_message(response.status_code, cutout),
                            status_code=response.status_code,
                        )
                    if not response.is_success:
                        await response.aread()
                        raise status_error(
                            response,
                            decode_body(response),
                            retry_after=parse_retry_after(response.headers),
                        )
                    return await consumer(ImageStream(response, max_bytes=self.max_download_bytes))
            except httpx.HTTPError as exc:
                raise translate_transport_error(exc, what=f"download of {link}") from exc

        result, _, _ = await retry_call(
            once,
            operation="download",
            url=link,
            policy=self.retry_policy,
            hooks=(*self._hooks, *_hooks(on_retry)),
            deadline=cutout.expires_at.timestamp(),
        )
        return result

    async def remove_background_to(
        self,
        image_url: str,
        path: str | os.PathLike[str],
        *,
        size: Size = "high_resolution",
    ) -> Path:
        """Submit ``image_url`` and stream the cutout straight into ``path``.

        ``path`` is checked before the POST, so a path that cannot be written
        costs no credit. A failure after it (a full disk, a broken download)
        carries the paid result as ``error.cutout``: store it with
        [`download_to`][freepik_bg.AsyncClient.download_to] while its links live
        (5 minutes) instead of calling this again, which would pay again.

        Raises:
            SinkError: ``path`` is a directory, under a file, or not writable (nothing
                sent, no ``cutout``); or the write failed after the POST.
            FreepikError: as `remove_background` and `download_to` raise.

        Examples:
            ```python
            await client.remove_background_to(url, "out/shoe.png")
            ```
        """
        import anyio.to_thread

        target = Path(path)
        # In a worker thread: a slow disk must not stall the loop's other tasks.
        await anyio.to_thread.run_sync(check_file_target, target)
        cutout = await self.remove_background(image_url)
        try:
            return await self.download_to(cutout, target, size=size)
        except FreepikError as exc:
            exc.cutout = cutout  # paid for: the caller may still store it
            raise
        except OSError as exc:
            error = SinkError(
                f"the cutout of {cutout.image_url} was paid for but not written to {target} "
                f"({exc.strerror or exc!r}): store it with download_to(error.cutout, path) "
                f"before its links expire at {cutout.expires_at.isoformat()}, without paying again"
            )
            error.cutout = cutout
            raise error from exc


def _hooks(on_retry: RetryHook | Sequence[RetryHook]) -> tuple[RetryHook, ...]:
    return (on_retry,) if callable(on_retry) else tuple(on_retry)


def _after_gate(
    gate: Gate, before_attempt: Callable[[], Awaitable[None]] | None
) -> Callable[[], Awaitable[None]]:
    """``before_attempt`` behind the client's gate.

    The gate goes first so that the caller's hook (the batch runner's) is the
    last thing before the request: its own gate and its "may this item still
    be sent?" checks then see the moment of sending, not a slot far ahead.
    """

    async def attempt() -> None:
        await gate.wait()
        if before_attempt is not None:
            await before_attempt()

    return attempt
