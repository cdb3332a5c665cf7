"""The exception hierarchy.

Every error the SDK raises derives from `FreepikError`, so ``except
freepik_bg.FreepikError`` catches them all. HTTP errors carry the status code
and the server's own message; nothing here ever holds the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import httpx

    from ._models import Cutout

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "FreepikError",
    "InsufficientCreditsError",
    "InternalServerError",
    "InvalidImageError",
    "InvalidParam",
    "InvalidRequestError",
    "JournalError",
    "LinkExpiredError",
    "NotFoundError",
    "OutputConflictError",
    "OutputNameError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "SinkError",
    "SkippedError",
    "StagingError",
    "TransformError",
]


class FreepikError(Exception):
    """Base class of every error raised by freepik_bg.

    ``attempts`` counts the requests made for the operation that failed, and
    ``ambiguous_retries`` how many of those were retries after a failure that
    the service may have billed (see the retry policy). ``cutout`` is the paid
    result when the failure came after the POST (`remove_background_to`'s
    download or write): store it with ``download_to`` while its links live,
    without paying again.

    Examples:
        ```python
        try:
            cutout = await client.remove_background(url)
        except FreepikError as exc:
            print(f"failed: {exc}")
        ```
    """

    attempts: int = 0
    ambiguous_retries: int = 0
    cutout: Cutout | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, which the default pickling
        # (and copy) cannot replay; rebuild from the instance state instead.
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[FreepikError], args: tuple[Any, ...], state: dict[str, Any]) -> FreepikError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigurationError(FreepikError):
    """The client is misconfigured, for example no API key was found."""


class InvalidRequestError(FreepikError, ValueError):
    """Input rejected locally, before any request was sent (no credit spent).

    Examples:
        >>> try:
        ...     validate_image_url("ftp://example.com/cat.jpg")
        ... except InvalidRequestError as exc:
        ...     print(exc)
        image_url must be an http(s) URL, got scheme 'ftp'
    """


class SkippedError(FreepikError):
    """An item was not attempted because the batch stopped first.

    ``cause`` is the error that stopped the batch (for example an
    [`AuthenticationError`][freepik_bg.AuthenticationError]), or ``None`` when the batch
    was cancelled.
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class SinkError(FreepikError):
    """The sink failed to store a downloaded result (disk full, permissions, an upload).

    The credit was spent and the links were valid: with a journal, a rerun
    downloads them again without a new POST while they live. The sink's own
    exception is the ``__cause__``.
    """


class StagingError(FreepikError):
    """The staging bucket refused an upload, a presign or a delete (no credit spent).

    Local files reach the service through a bucket (``stage=``); when it
    cannot be written, every local item would fail the same way, so the
    batch stops. The store's own exception is the ``__cause__``; the message
    never holds a secret.
    """


class TransformError(FreepikError):
    """An image transform (format, background, trim, margin, max side) failed for one item.

    The cutout was paid for and downloaded: with a journal, a rerun with
    corrected options downloads it again without a new POST while its links
    live, and ``keep_png=True`` keeps the untouched PNG beside the output. It
    fails only its own item; the batch goes on.

    Examples:
        ```python
        try:
            jpeg = transform(b"not an image", output_format="jpeg")
        except TransformError as exc:
            print(f"not stored: {exc}")  # cannot transform the cutout: ...
        ```
    """


class JournalError(FreepikError):
    """The journal cannot be written (disk full, permissions): the batch stops.

    What was already paid for is drained first; the journal's earlier lines stay valid.
    """


class OutputConflictError(FreepikError):
    """An output already exists under an item's name but holds another URL's cutout.

    Never skipped silently and never overwritten unless ``overwrite=True``.
    """


class OutputNameError(FreepikError):
    """The destination refused an item's output name (too long for its filesystem, say).

    Only that item fails: give it a shorter name (its name column's cell) or a shorter -o.
    """


class APIConnectionError(FreepikError):
    """The service could not be reached, or the connection broke mid-request.

    ``maybe_processed`` is True when the request may have reached the service
    before the failure (a read timeout, a connection lost after sending): such
    a POST may have been billed.
    """

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        maybe_processed: bool = False,
    ) -> None:
        super().__init__(message)
        # Exceptions get pickled, logged with their attributes and sent to error
        # reporters: keep the request, minus the key.
        self.request = without_secrets(request)
        self.maybe_processed = maybe_processed


# Headers that must never be kept in an exception (the transport's API_KEY_HEADER).
_SECRET_HEADERS = ("x-freepik-api-key",)


def without_secrets(request: httpx.Request | None) -> httpx.Request | None:
    """``request``, or a copy of it without the API key header."""
    if request is None or not any(name in request.headers for name in _SECRET_HEADERS):
        return request
    import httpx  # here: the CLI's --help imports the errors, and must not pay for httpx

    headers = httpx.Headers(request.headers)
    for name in _SECRET_HEADERS:
        if name in headers:
            del headers[name]
    return httpx.Request(request.method, request.url, headers=headers)


class APITimeoutError(APIConnectionError):
    """A request timed out (connect, read, write or pool)."""


class RedirectError(APIConnectionError):
    """A result link redirected too many times, in a loop, or to a non-http(s) URL."""


@attrs.frozen(slots=True)
class InvalidParam:
    """One entry of a 400 response's ``invalid_params``: which field and why."""

    name: str
    reason: str


class APIStatusError(FreepikError):
    """The service answered with an error status.

    Attributes:
        status_code: the HTTP status.
        message: the server's ``message`` field (or a short fallback).
        body: the decoded JSON body, or the text when it was not JSON.
        headers: the response headers.
        request_id: the ``x-request-id`` header, when the server sent one.
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code}: {message}")
        self.message = message
        self.status_code = status_code
        self.body = body
        self.headers: Mapping[str, str] = dict(headers or {})
        self.request_id = self.headers.get("x-request-id")
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code}, message={self.message!r})"


class BadRequestError(APIStatusError):
    """400 or 422: the request was rejected; ``invalid_params`` says which fields and why.

    A 400 ``Failed to download the image`` means the service could not fetch
    ``image_url``. These are never retried.
    """

    @property
    def invalid_params(self) -> tuple[InvalidParam, ...]:
        """Which fields were refused and why (``invalid_params``, flat or under ``problem``)."""
        return _parse_invalid_params(self.body)

    def __str__(self) -> str:
        base = super().__str__()
        if not self.invalid_params:
            return base
        details = "; ".join(f"{p.name}: {p.reason}" for p in self.invalid_params)
        return f"{base} ({details})"


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid. A batch stops at once on this."""


class InsufficientCreditsError(APIStatusError):
    """402: the account has no credits left. A batch stops at once on this."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not use this endpoint. A batch stops at once on this."""


class NotFoundError(APIStatusError):
    """404 from the API endpoint itself (a wrong ``base_url``, usually)."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's demand, in seconds, if any.

    Retried after ``retry_after`` (or a backoff); a demand longer than the
    policy's ``max_retry_after`` is raised at once instead.
    """


class InternalServerError(APIStatusError):
    """5xx: the service failed. 500, 502 and 504 may have been billed; 503 was not."""


class APIResponseValidationError(FreepikError):
    """A 2xx response whose body is not the documented JSON."""

    def __init__(self, message: str, *, status_code: int = 200, body: object = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class LinkExpiredError(FreepikError):
    """A result link is gone: it expired (5 minutes) or answered 403, 404 or 410.

    The credit for it was spent; a batch re-submits the image once by default.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class InvalidImageError(FreepikError):
    """Downloaded bytes are not a PNG or JPEG, are truncated, or exceed the size cap.

    ``transient`` is False for failures a retry cannot fix (the size cap).
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


def _parse_invalid_params(body: object) -> tuple[InvalidParam, ...]:
    if not isinstance(body, Mapping):
        return ()
    raw = body.get("invalid_params")
    problem = body.get("problem")
    if raw is None and isinstance(problem, Mapping):
        raw = problem.get("invalid_params")
    if not isinstance(raw, list):
        return ()
    params: list[InvalidParam] = []
    for entry in raw:
        if isinstance(entry, Mapping):
            params.append(
                InvalidParam(name=str(entry.get("name", "")), reason=str(entry.get("reason", "")))
            )
    return tuple(params)


def error_record(error: FreepikError | None) -> dict[str, Any] | None:
    """A JSON-ready summary of an error (type, message, status) for journals and reports."""
    if error is None:
        return None
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, APIStatusError):
        record["status_code"] = error.status_code
    return record
