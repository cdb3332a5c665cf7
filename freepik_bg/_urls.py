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
    "url_identity",
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


# Nothing for url_identity to change, with no "#" anywhere: a lowercase http(s) scheme and
# authority with no port (no ':') and no userinfo (no '@'), then a path. Only the start is
# matched: `"#" in` scans the rest faster than the regex would.
_CANONICAL_START = re.compile(r"https?://[^A-Z/?#:@\\]*/").match
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def url_identity(url: str) -> str:
    """The form of ``url`` that duplicates and the journal compare: one image, one credit.

    Spellings the service fetches as the same resource get the same identity: the
    scheme and host in lowercase, the default port (80 for http, 443 for https)
    dropped, an empty path as ``/``, the fragment (never sent) dropped. The rest
    (userinfo, the path's case, the query, percent-encoding) is kept as written:
    those may name another image. Anything that is not an http(s) URL (a local
    file's absolute path) is returned unchanged. Never raises.

    Only the identity is canonical: the POST, reports, the journal's lines and
    output names keep the URL as the user wrote it.

    Examples:
        >>> url_identity("HTTPS://Example.COM:443/A.png?x=1#top")
        'https://example.com/A.png?x=1'
        >>> url_identity("https://example.com/a.png")
        'https://example.com/a.png'
    """
    # Run once per input line of plans of millions: most URLs are canonical already.
    if "#" not in url and _CANONICAL_START(url) is not None:
        return url
    scheme, sep, rest = url.partition("://")
    scheme = scheme.translate(_ASCII_LOWER)
    if not sep or scheme not in DEFAULT_PORTS:
        return url
    rest = rest.partition("#")[0]
    end = len(rest)
    # A backslash ends the authority too: a WHATWG parser (a browser, Node) reads it as
    # "/", so what follows it is path, whose case must be kept.
    for stop in "/?\\":
        found = rest.find(stop)
        if 0 <= found < end:
            end = found
    authority, tail = rest[:end], rest[end:]
    if not tail or tail[0] == "?":
        tail = "/" + tail  # "http://a.test?q" asks for "/?q"
    userinfo, at, hostport = authority.rpartition("@")
    host, port = hostport, ""
    # An IPv6 literal holds colons of its own: the port is after its "]" (and an
    # unclosed "[" has no port to find).
    colon, bracket = hostport.rfind(":"), hostport.rfind("]")
    if colon > bracket and hostport.find("[") <= bracket:
        host, port = hostport[:colon], hostport[colon + 1 :]
    # An empty port is the default (RFC 3986 6.2.3), and so is "0443" (a port is a number);
    # anything else stays as written. No int(): a 5,000-digit "port" would raise.
    if port and port.lstrip("0") != str(DEFAULT_PORTS[scheme]):
        host += ":" + port
    # ASCII only, as RFC 3986 says: whether two non-ASCII spellings are one host is for
    # IDNA's mapping to say, not str.lower(); merging two hosts would drop an image.
    return f"{scheme}://{userinfo}{at}{host.translate(_ASCII_LOWER)}{tail}"


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
