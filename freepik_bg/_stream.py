"""Validation of a result link's body as it streams: format, size cap, length, trailer."""

from __future__ import annotations

import httpx

from ._errors import InvalidImageError
from ._transport import Reply
from ._transport_errors import translate_transport_error

__all__ = ["ImageStream"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TRAILER = b"IEND\xaeB`\x82"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
_TAIL_BYTES = 1024
_CHUNK_SIZE = 256 * 1024


class ImageStream:
    """The validated body of a result link, as an async iterator of chunks.

    It checks, as the bytes pass: the PNG or JPEG signature, the size cap, the
    declared Content-Length, and the format's trailer (so a body cut short is
    caught even without a Content-Length). A failed check raises
    `InvalidImageError` from the iteration, before the consumer can
    commit anything.
    """

    __slots__ = ("_declared", "_head", "_it", "_max_bytes", "_received", "_tail", "_url")

    def __init__(self, response: Reply, *, max_bytes: int) -> None:
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
