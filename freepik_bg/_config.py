"""Defaults, environment lookup and input validation."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

import httpx

from ._errors import ConfigurationError, InvalidRequestError

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "ENDPOINT_PATH",
    "MAX_URL_LENGTH",
    "Origin",
    "origin_of",
    "resolve_api_key",
    "resolve_base_url",
    "validate_image_url",
]

API_KEY_ENV = "FREEPIK_API_KEY"
BASE_URL_ENV = "FREEPIK_BASE_URL"
DEFAULT_BASE_URL = "https://api.freepik.com"
ENDPOINT_PATH = "/v1/ai/beta/remove-background"

DEFAULT_MAX_RETRIES = 5
"""Six attempts in all: enough to ride out a burst of 429s or a short outage in bulk runs."""

DEFAULT_MAX_CONNECTIONS = 64
# Background removal of a 25-megapixel image can take a while, so reads get a
# generous budget; connecting should be quick. No pool timeout: a task waiting
# for a free connection is queueing, not failing.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=None)

DEFAULT_MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
"""A 25-megapixel RGBA PNG is at most ~100 MB uncompressed; twice that is clearly wrong."""

MAX_URL_LENGTH = 8192
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")

Origin = tuple[str, str, int]


def resolve_api_key(api_key: str | None) -> str:
    """The explicit key, else ``$FREEPIK_API_KEY``; a clear error when neither is set."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key is None or not key.strip():
        raise ConfigurationError(
            f"No API key: pass api_key=... or set the {API_KEY_ENV} environment variable."
        )
    key = key.strip()
    # A key with control characters cannot be a header value; say so without echoing it.
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise ConfigurationError("The API key contains control characters.")
    return key


def resolve_base_url(base_url: str | httpx.URL | None) -> httpx.URL:
    """The explicit base URL, else ``$FREEPIK_BASE_URL``, else the production API."""
    raw = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = httpx.URL(str(raw))
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"Invalid base_url {str(raw)!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {str(raw)!r}")
    path = url.path.rstrip("/")
    return url.copy_with(path=path, query=None, fragment=None)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL) -> Origin:
    """(scheme, host, port) with the default port filled in: the unit of key safety."""
    scheme = url.scheme.lower()
    return (scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme, 0))


def validate_image_url(image_url: object) -> str:
    """Check that ``image_url`` is an absolute http(s) URL the service could fetch.

    Raises :class:`InvalidRequestError` (no request is sent, no credit spent).

    Example:
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
