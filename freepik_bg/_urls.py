"""URLs: which ones the service can fetch, which name object storage, what an origin is.

Checked before any request, so that a bad URL costs nothing.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ._errors import InvalidRequestError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_PORTS",
    "MAX_URL_LENGTH",
    "STORAGE_SCHEMES",
    "Origin",
    "is_storage_url",
    "origin_of",
    "validate_image_url",
]

MAX_URL_LENGTH = 8192

STORAGE_SCHEMES = ("s3", "gs", "az", "abfs", "abfss", "file", "memory")
"""URL schemes naming object storage; ``abfs``/``abfss`` are Azure with the account in the URL."""
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")

Origin = tuple[str, str, int]


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL) -> Origin:
    """(scheme, host, port) with the default port filled in: the unit of key safety."""
    scheme = url.scheme.lower()
    return (scheme, url.host.lower(), url.port or DEFAULT_PORTS.get(scheme, 0))


def validate_image_url(image_url: object) -> str:
    """Check that ``image_url`` is an absolute http(s) URL the service could fetch.

    Raises [`InvalidRequestError`][freepik_bg.InvalidRequestError] (no request is sent, no
    credit spent).

    Examples:
        >>> validate_image_url("https://example.com/cat.jpg")
        'https://example.com/cat.jpg'
    """
    if not isinstance(image_url, str):
        raise InvalidRequestError(f"image_url must be a string, got {type(image_url).__name__}")
    url = image_url.strip()
    if not url:
        raise InvalidRequestError("image_url is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequestError(
            f"image_url is {len(url)} characters long; the limit is {MAX_URL_LENGTH}"
        )
    if _WHITESPACE_OR_CONTROL.search(url):
        raise InvalidRequestError("image_url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise InvalidRequestError(f"image_url is not a valid URL: {exc}") from None
    if not parts.scheme:
        raise InvalidRequestError("image_url must be an absolute http(s) URL, got a relative one")
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidRequestError(
            f"image_url must be an http(s) URL, got scheme {parts.scheme.lower()!r}"
        )
    if not host:
        raise InvalidRequestError("image_url has no host")
    return url


def is_storage_url(text: str) -> bool:
    """Whether ``text`` names object storage (``s3://``, ``gs://``, ``az://``, ``file://``...).

    Examples:
        >>> is_storage_url("s3://bucket/cutouts/")
        True
        >>> is_storage_url("https://example.com/cat.jpg")
        False
    """
    scheme, sep, _ = text.strip().partition("://")
    return bool(sep) and scheme.lower() in STORAGE_SCHEMES
