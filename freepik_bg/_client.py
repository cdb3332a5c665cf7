"""The async client: submit an image, download its cutout at once."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import httpx

from ._batch import DEFAULT_BURST, DEFAULT_CONCURRENCY, DEFAULT_RATE
from ._config import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ENDPOINT_PATH,
    resolve_api_key,
    resolve_base_url,
    validate_image_url,
)
from ._errors import (
    APIResponseValidationError,
    InvalidImageError,
    LinkExpiredError,
    decode_body,
    status_error,
)
from ._models import SIZES, BatchReport, Cutout, Size
from ._retries import RetryHook, RetryPolicy, parse_retry_after, retry_call, utc_now
from ._transport import ApiKeyAuth, open_stream, translate_transport_error

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._batch import BatchOptions, BatchResults, ProgressHook
    from ._journal import Journal
    from ._sinks import Sink

__all__ = ["AsyncClient", "ImageStream"]

logger = logging.getLogger("freepik_bg")

T = TypeVar("T")

__version__ = "0.1.0"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TRAILER = b"IEND\xaeB`\x82"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
_TAIL_BYTES = 1024
_CHUNK_SIZE = 256 * 1024
_GONE_STATUSES = frozenset({403, 404, 410})


class ImageStream:
    """The validated body of a result link, as an async iterator of chunks.

    It checks, as the bytes pass: the PNG or JPEG signature, the size cap, the
    declared Content-Length, and the format's trailer (so a body cut short is
    caught even without a Content-Length). A failed check raises
    :class:`InvalidImageError` from the iteration, before the consumer can
    commit anything.
    """

    __slots__ = ("_declared", "_head", "_it", "_max_bytes", "_received", "_tail", "_url")

    def __init__(self, response: httpx.Response, *, max_bytes: int) -> None:
        self._url = str(response.url)
        self._max_bytes = max_bytes
        self._received = 0
        self._head = b""
        self._tail = b""
        self._declared: int | None = None
        if "content-encoding" not in response.headers:
            try:
                self._declared = int(response.headers.get("content-length", ""))
            except ValueError:
                self._declared = None
        if self._declared is not None and self._declared > max_bytes:
            raise InvalidImageError(
                f"{self._url} declares {self._declared} bytes, over the {max_bytes}-byte cap",
                transient=False,
            )
        self._it = response.aiter_bytes(_CHUNK_SIZE)

    def __aiter__(self) -> ImageStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._it.__anext__()
        except StopAsyncIteration:
            self._finish()
            raise
        except httpx.HTTPError as exc:
            raise translate_transport_error(exc, what=f"download of {self._url}") from exc
        self._received += len(chunk)
        if self._received > self._max_bytes:
            raise InvalidImageError(
                f"{self._url} sent more than the {self._max_bytes}-byte cap", transient=False
            )
        if len(self._head) < len(_PNG_SIGNATURE):
            self._head += chunk[: len(_PNG_SIGNATURE)]
            if len(self._head) >= len(_PNG_SIGNATURE):
                self._check_signature()
        self._tail = (
            (self._tail + chunk)[-_TAIL_BYTES:]
            if len(chunk) < _TAIL_BYTES
            else chunk[-_TAIL_BYTES:]
        )
        return chunk

    def _check_signature(self) -> None:
        if not (self._head.startswith(_PNG_SIGNATURE) or self._head.startswith(_JPEG_SIGNATURE)):
            raise InvalidImageError(
                f"{self._url} did not return a PNG or JPEG (starts with {self._head[:8]!r})"
            )

    def _finish(self) -> None:
        if self._received == 0:
            raise InvalidImageError(f"{self._url} returned an empty body")
        if len(self._head) < len(_PNG_SIGNATURE):
            self._check_signature()
        if self._declared is not None and self._received != self._declared:
            raise InvalidImageError(
                f"{self._url} sent {self._received} of {self._declared} bytes (truncated)"
            )
        if self._head.startswith(_PNG_SIGNATURE):
            complete = self._tail.endswith(_PNG_TRAILER)
        else:
            complete = _JPEG_END in self._tail
        if not complete:
            raise InvalidImageError(f"{self._url} ended before the image did (truncated)")


class AsyncClient:
    """Asynchronous client for Freepik's remove-background API.

    It owns an httpx connection pool (or uses yours) and is meant to be
    shared: create one per application, use it from many tasks, close it at
    the end. Works under asyncio and trio.

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
        on_retry: callables given a :class:`RetryEvent` before each retry.

    Example:
        >>> async with AsyncClient() as client:  # doctest: +SKIP
        ...     cutout = await client.remove_background("https://example.com/shoe.jpg")
        ...     await client.download_to(cutout, "shoe.png")
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
    ) -> None:
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
        self._hooks: tuple[RetryHook, ...] = (on_retry,) if callable(on_retry) else tuple(on_retry)
        if http_client is not None:
            self._http = http_client
            self._owns_http = False
        else:
            if max_connections < 1:
                raise ValueError("max_connections must be >= 1")
            if timeout is None:
                timeouts = DEFAULT_TIMEOUT
            elif isinstance(timeout, httpx.Timeout):
                timeouts = timeout
            else:
                timeouts = httpx.Timeout(float(timeout), pool=None)
            self._http = httpx.AsyncClient(
                timeout=timeouts,
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
                headers={"user-agent": f"freepik-bg/{__version__} httpx/{httpx.__version__}"},
                verify=verify,
                proxy=proxy,
                follow_redirects=False,
            )
            self._owns_http = True

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={str(self.base_url)!r}, auth={self._auth!r})"

    @property
    def http_client(self) -> httpx.AsyncClient:
        """The underlying httpx client."""
        return self._http

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

    async def remove_background(self, image_url: str) -> Cutout:
        """Submit ``image_url`` and return the four result links.

        Retries per the client's policy; the result's ``attempts`` and
        ``ambiguous_retries`` say what that took. The links live 5 minutes:
        download straight away (or use :meth:`batch`, which does).

        Raises:
            InvalidRequestError: ``image_url`` is not an absolute http(s) URL
                (nothing is sent).
            BadRequestError: the service refused it, e.g. it could not fetch it.
            APIStatusError: any other error status (401, 402, 429 after retries, 5xx, ...).
            APIConnectionError: the service could not be reached, after retries.

        Example:
            >>> url = "https://example.com/shoe.jpg"
            >>> cutout = await client.remove_background(url)  # doctest: +SKIP
            >>> cutout.high_resolution  # doctest: +SKIP
            'https://api.freepik.com/v1/ai/beta/images/download/.../high.png'
        """
        return await self._submit(validate_image_url(image_url))

    async def _submit(
        self,
        image_url: str,
        *,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
        hooks: Sequence[RetryHook] = (),
    ) -> Cutout:
        cutout, attempts, ambiguous = await retry_call(
            lambda: self._post_once(image_url),
            operation="post",
            url=image_url,
            policy=self.retry_policy,
            hooks=(*self._hooks, *hooks),
            before_attempt=before_attempt,
        )
        return attrs.evolve(cutout, attempts=attempts, ambiguous_retries=ambiguous)

    async def _post_once(self, image_url: str) -> Cutout:
        headers = {"accept": "application/json", **self._auth.headers_for(self._endpoint)}
        try:
            response = await self._http.post(
                self._endpoint,
                data={"image_url": image_url},
                headers=headers,
                follow_redirects=False,
            )
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

        For large files prefer :meth:`download_to`, which streams to disk.

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

        Example:
            >>> await client.download_to(cutout, "out/shoe.png")  # doctest: +SKIP
            PosixPath('out/shoe.png')
        """
        from ._sinks import write_atomic

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
        hooks: Sequence[RetryHook] = (),
    ) -> T:
        """Stream one rendition into ``consumer`` and return what it returns.

        ``consumer`` receives validated chunks; if it is retried (a broken
        transfer), it is called again with a fresh stream, so it must discard
        what it got when iteration raises. Retries stop when the link expires.
        """
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        link = cutout.link(size)

        async def once() -> T:
            try:
                async with open_stream(self._http, link, auth=self._auth) as response:
                    logger.debug("GET %s -> %d", response.url, response.status_code)
                    if response.status_code in _GONE_STATUSES:
                        raise LinkExpiredError(
                            f"result link answered {response.status_code}: it has expired "
                            f"(links live 5 minutes; this one was issued at "
                            f"{cutout.received_at.isoformat()})",
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
            hooks=(*self._hooks, *hooks),
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

        Example:
            >>> await client.remove_background_to(url, "out/shoe.png")  # doctest: +SKIP
        """
        cutout = await self.remove_background(image_url)
        return await self.download_to(cutout, path, size=size)

    # -- batches ----------------------------------------------------------

    def batch(
        self,
        urls: Iterable[str] | AsyncIterable[str],
        dest: str | os.PathLike[str] | Sink,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate: float | None = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        size: Size = "high_resolution",
        journal: str | os.PathLike[str] | Journal | None = None,
        overwrite: bool = False,
        fail_fast: bool = False,
        resubmit_expired: int = 1,
        progress: ProgressHook | None = None,
    ) -> AbstractAsyncContextManager[BatchResults]:
        """Fan out many URLs; yield an :class:`ItemResult` for each as it finishes.

        Each item is submitted and then downloaded at once by the same task,
        so no result waits behind new submissions while its link ticks.

        Args:
            urls: any iterable or async iterable of URLs, pulled lazily (an
                endless generator works; memory stays flat).
            dest: a directory (one safe, deterministic file name per URL,
                written atomically) or a :class:`Sink`.
            concurrency: most items in flight. It halves on repeated 429s
                and grows back (AIMD).
            rate: a client-side limit on POSTs per second, shared by all
                tasks and their retries. The default follows Freepik's
                documented limit (10/s sustained); ``None`` turns it off. A
                429 pauses every submission.
            burst: how many POSTs may go at once before ``rate`` applies
                (default 50, Freepik's documented burst).
            size: which rendition to store.
            journal: a JSON-lines file (or :class:`Journal`) recording each
                item; rerun with the same journal to skip finished items
                without a request, retry failed ones, and download links
                already paid for if they are still alive.
            overwrite: with ``False``, an existing output is skipped without
                spending a credit.
            fail_fast: stop at the first failure. The batch always stops on
                401, 402 and 403; the remaining items fail at once, unsent.
            resubmit_expired: how many times to submit again when a link
                has expired before it could be downloaded.
            progress: called with a :class:`ProgressEvent` as things happen.

        Leaving the block (or breaking out of the loop) cancels what is in
        flight; temp files are removed and the journal stays valid.

        Example:
            >>> async with client.batch(urls, "out/") as results:  # doctest: +SKIP
            ...     async for item in results:
            ...         print(item.index, item.status, item.path or item.error)
        """
        from ._batch import open_batch

        return open_batch(
            self,
            urls,
            dest,
            concurrency=concurrency,
            rate=rate,
            burst=burst,
            size=size,
            journal=journal,
            overwrite=overwrite,
            fail_fast=fail_fast,
            resubmit_expired=resubmit_expired,
            progress=progress,
        )

    async def run_batch(
        self,
        urls: Iterable[str] | AsyncIterable[str],
        dest: str | os.PathLike[str] | Sink,
        **options: Unpack[BatchOptions],
    ) -> BatchReport:
        """Run a whole batch and return its report; takes the options of :meth:`batch`.

        Example:
            >>> report = await client.run_batch(urls, "out/", concurrency=16)  # doctest: +SKIP
            >>> print(report.summary())  # doctest: +SKIP
        """
        from ._batch import collect_report

        async with self.batch(urls, dest, **options) as results:
            return await collect_report(results)
