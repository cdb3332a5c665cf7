"""`url_identity`: which spellings of a URL are one image, paid for once."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from freepik_bg._errors import InvalidRequestError
from freepik_bg._urls import DEFAULT_PORTS, url_identity, validate_image_url

from .test_startup_scan import _corpus


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        # The fragment is never sent.
        ("https://example.com/a.png#x", "https://example.com/a.png"),
        ("https://example.com/a.png?q=1#x", "https://example.com/a.png?q=1"),
        ("https://example.com/a.png#", "https://example.com/a.png"),
        # Scheme and host are case-insensitive.
        ("HTTPS://EXAMPLE.com/a.png", "https://example.com/a.png"),
        ("hTtP://Example.COM/a.png", "http://example.com/a.png"),
        # The default port is the same as none; an empty one too.
        ("https://example.com:443/a.png", "https://example.com/a.png"),
        ("http://example.com:80/a.png", "http://example.com/a.png"),
        ("http://example.com:080/a.png", "http://example.com/a.png"),
        ("http://example.com:/a.png", "http://example.com/a.png"),
        ("http://[::1]:80/a.png", "http://[::1]/a.png"),
        # An empty path is "/".
        ("https://example.com", "https://example.com/"),
        ("https://example.com?q=1", "https://example.com/?q=1"),
        ("https://Example.com#x", "https://example.com/"),
        # All at once.
        ("HTTPS://Example.COM:443?Q=A#B", "https://example.com/?Q=A"),
    ],
)
def test_spellings_of_one_image_have_one_identity(url: str, identity: str) -> None:
    assert url_identity(url) == identity
    assert url_identity(identity) == identity


@pytest.mark.parametrize(
    "url",
    [
        # Ports that are not the scheme's default name another server.
        "https://example.com:8443/a.png",
        "http://example.com:443/a.png",
        "https://example.com:80/a.png",
        "http://example.com:0/a.png",
        "http://[::1]:8080/a.png",
        "http://[::1]/a.png",
        # Userinfo, the path's case, the query and percent-encoding are kept as written.
        "https://User:PW@example.com/a.png",
        "https://example.com/A.PNG",
        "https://example.com/a.png?W=800&h=600",
        "https://example.com/a.png?",
        "https://example.com/caf%C3%A9%2f.png",
        "https://example.com//a.png",
        # A non-ASCII host is for IDNA to fold, not str.lower().
        "https://Ärger.example/a.png",
    ],
)
def test_what_may_name_another_image_is_kept(url: str) -> None:
    assert url_identity(url) == url


def test_only_the_authority_of_userinfo_urls_is_folded() -> None:
    assert url_identity("HTTP://User@Example.COM:80/P.png") == "http://User@example.com/P.png"
    # A backslash ends the host for a WHATWG parser: the path's case after it is kept.
    assert url_identity("HTTP://A.test\\X.png") == "http://a.test\\X.png"


@pytest.mark.parametrize(
    "text",
    [
        "/home/me/photos/Red#1.png",  # a local file's identity: its absolute path
        "C:\\Photos\\A.png",
        "ftp://Example.com/a.png#x",
        "s3://Bucket/a.png",
        "HTTPS:/example.com/a.png",
        "not a url",
        "",
    ],
)
def test_what_is_no_http_url_is_unchanged(text: str) -> None:
    assert url_identity(text) == text


def _resource(url: str) -> tuple[object, ...]:
    """What urlsplit says a URL asks its server for (the fragment is not asked for)."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS[parts.scheme.lower()]
    return parts.username, parts.password, parts.hostname, port, parts.path or "/", parts.query


def test_it_never_raises_is_idempotent_and_keeps_the_resource() -> None:
    # The start-up scan's corpus: every scheme, separator, host and tail it tries, mangled.
    checked = 0
    for text in [*_corpus(), "http://host:" + "9" * 5000 + "/a.png"]:
        identity = url_identity(text)
        assert url_identity(identity) == identity, text
        try:
            url = validate_image_url(text)  # what a batch keys: stripped
        except InvalidRequestError:
            continue
        identity = url_identity(url)
        assert validate_image_url(identity) == identity, text
        assert _resource(identity) == _resource(url), text
        checked += 1
    assert checked > 1000


def test_a_canonical_url_is_returned_as_it_is() -> None:
    # The fast path: no copy for the URLs of most lists.
    url = "https://cdn.example.com/p/1/img-1.jpg?w=800"
    assert url_identity(url) is url
