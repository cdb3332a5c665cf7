"""Transport failures as our errors: whether the request may have been processed,
what went wrong in words, and never the key.
"""

from __future__ import annotations

import ssl

import httpx

from ._errors import APIConnectionError, APITimeoutError, without_secrets

__all__ = ["translate_transport_error"]

# Failures that happen before the request can have reached the server.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)

# What each timeout means, and which of httpx's timeouts it is.
_TIMEOUTS = {
    httpx.ConnectTimeout: ("could not connect within", "connect"),
    httpx.ReadTimeout: ("no data received for", "read"),
    httpx.WriteTimeout: ("could not send within", "write"),
    httpx.PoolTimeout: ("no free connection within", "pool"),
}


def _timeout_detail(exc: httpx.HTTPError, request: httpx.Request | None) -> str | None:
    """A timeout in words, with its limit: httpx's own message may be the event loop's
    ("Cancelled via cancel scope 7f99...; reason: deadline exceeded")."""
    for kind, (words, name) in _TIMEOUTS.items():
        if isinstance(exc, kind):
            limits = request.extensions.get("timeout", {}) if request is not None else {}
            limit = limits.get(name)
            if isinstance(limit, int | float):
                return f"{words} {limit:g} s"
            return f"{words} the limit"
    return None


def _detail(exc: BaseException) -> str:
    """The most telling message of an exception chain.

    Some backends hide the reason: under trio a failed TLS handshake surfaces as
    ``httpx.ConnectError('')`` caused by a bare ``BrokenResourceError``, the
    certificate error sitting further down the chain. A TLS error is always the
    best explanation; otherwise httpx's own message, else the first non-empty one.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, ssl.SSLError):
            return str(link)
    for link in chain:
        if str(link):
            return str(link)
    return type(exc).__name__


def translate_transport_error(exc: httpx.HTTPError, *, what: str) -> APIConnectionError:
    """Map an httpx transport error to ours, recording whether it may have been processed."""
    maybe_processed = not isinstance(exc, _NOT_SENT)
    request: httpx.Request | None
    try:
        request = exc.request
    except RuntimeError:
        request = None
    detail = _timeout_detail(exc, request) or _detail(exc)
    if request is not None and not maybe_processed and request.url.host not in what:
        # "All connection attempts failed" does not say where: the host is what to check.
        detail += f" (connecting to {request.url.scheme}://{request.url.netloc.decode()})"
    if request is not None:
        # The original stays chained as __cause__, and tools that pickle causes
        # (tblib, which Dask installs; error reporters) would carry the key in it.
        exc.request = without_secrets(request)  # type: ignore[assignment]
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"{what} timed out ({type(exc).__name__}): {detail}",
            request=request,
            maybe_processed=maybe_processed,
        )
    return APIConnectionError(
        f"{what} failed ({type(exc).__name__}): {detail}",
        request=request,
        maybe_processed=maybe_processed,
    )
