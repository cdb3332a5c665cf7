"""Error responses: the typed error for a status code, read from what the API sent.

The API's errors are JSON with ``message``; a 400 may carry ``invalid_params`` at
the top level or under ``"problem"``. Anything else (an HTML page from a proxy,
an empty body) still gives a typed error with a readable message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InsufficientCreditsError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)

if TYPE_CHECKING:
    from ._models import Cutout

__all__ = [
    "ResponseBody",
    "ResponseHead",
    "decode_body",
    "describe_body",
    "gone_message",
    "status_error",
]

# Bodies are kept for debugging, but a misbehaving server could send megabytes.
_MAX_BODY_CHARS = 2000


class ResponseBody(Protocol):
    """A response whose body was read (``httpx.Response``, or the aiohttp pool's)."""

    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class ResponseHead(Protocol):
    """A response's status line and headers."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def decode_body(response: ResponseBody) -> object:
    """The JSON body if it parses, else the (truncated) text; never raises."""
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        try:
            return response.text[:_MAX_BODY_CHARS]
        except (UnicodeDecodeError, LookupError):  # pragma: no cover - odd charsets
            return None


def _message_from(body: object, status_code: int, reason: str) -> str:
    candidates: list[Any] = []
    if isinstance(body, Mapping):
        candidates.append(body.get("message"))
        problem = body.get("problem")
        if isinstance(problem, Mapping):
            candidates.append(problem.get("message"))
            candidates.append(problem.get("detail"))
        candidates.append(body.get("detail"))
        candidates.append(body.get("error"))
    elif isinstance(body, str) and body.strip() and len(body) <= 200:
        candidates.append(body.strip())
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return reason or f"HTTP {status_code}"


def status_error(
    response: ResponseHead, body: object, *, retry_after: float | None = None
) -> APIStatusError:
    """Build the typed error for an error response whose body was already read."""
    status = response.status_code
    message = _message_from(body, status, response.reason_phrase)
    # Lower-cased, as httpx gives them, whatever carried the response.
    headers = {name.lower(): value for name, value in response.headers.items()}
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    return cls(message, status_code=status, body=body, headers=headers, retry_after=retry_after)


def describe_body(body: object) -> str:
    """A short, single-line rendering of a body for error messages."""
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    text = " ".join(text.split())
    return text if len(text) <= 120 else text[:117] + "..."


def gone_message(status: int, cutout: Cutout) -> str:
    """Why a result link answered 404/403/410: its 5 minutes ran out, or it was refused
    early (said so: a resubmission pays again, and the reason is not the clock)."""
    from ._models import LINK_TTL  # here: _models imports this module

    issued = cutout.received_at.isoformat(timespec="seconds")
    left = cutout.seconds_left()
    if left > 0:
        return (
            f"result link answered {status} {LINK_TTL.total_seconds() - left:.0f} s after it "
            f"was issued (at {issued}; links should live 5 minutes): taken as expired"
        )
    return (
        f"result link answered {status}: it has expired (links live 5 minutes; issued at {issued})"
    )
