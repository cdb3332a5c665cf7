"""The circuit breaker: when one failure means every later request would fail the same way.

A wrong key, an account out of credits, a base URL whose endpoint answers
404, an API host where nothing listens, a destination that cannot be written:
each of these would fail every remaining item, most of them after a request.
The breaker trips once, with one message that names what to check, and the
runner gives every item not yet sent the same "not attempted" error.
"""

from __future__ import annotations

import logging

import attrs

from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    FreepikError,
    InsufficientCreditsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SinkError,
    SkippedError,
    StagingError,
)
from ._retries import Classification, classify_post_error

__all__ = ["AMBIGUOUS_RUN_LIMIT", "Breaker"]

logger = logging.getLogger("freepik_bg")

_BASE_URL_HINT = "check base_url (--base-url, $FREEPIK_BASE_URL)"
# Failed connection attempts in a row, across the batch, with no POST getting
# through in between: enough to ride out a blip, few enough to stop in seconds.
CONNECT_RUN_LIMIT = 8
# POSTs in a row answered 2xx with a body that is not the API's JSON, with no other
# answer in between: a web server or a proxy answering for the API, or an API that is
# broken. Each may have cost a credit, so the run stops instead of paying for every
# item; a failure mix where one in three answers is garbage stays far below it.
GARBAGE_RUN_LIMIT = 20
# POST attempts in a row that failed after the service may have processed them (a 5xx,
# a connection lost after sending, a read timeout), with no clear answer in between:
# each may have cost a credit, and with retries on, every item pays for several. A
# service in that state is failing, not the items: stop, and resume later. At least
# twice the concurrency: a blip fails every POST in flight at once, and a batch of 32
# should ride out one round of those.
AMBIGUOUS_RUN_LIMIT = 20


def _origin(error: APIConnectionError) -> str:
    request = error.request
    if request is None:
        return "the API host"
    return str(request.url.copy_with(path="/", query=None, fragment=None)).rstrip("/")


def _status(error: FreepikError) -> int | None:
    return error.status_code if isinstance(error, APIStatusError) else None


def stop_reason(error: FreepikError, *, on_post: bool) -> str | None:
    """Why ``error`` stops the whole batch, naming what to check; ``None`` if it does not."""
    if isinstance(error, AuthenticationError):
        return (
            f"the API key was refused ({error}): check $FREEPIK_API_KEY (or the api_key= "
            "you passed, or the command line's --api-key-file)"
        )
    if isinstance(error, InsufficientCreditsError):
        return f"the account has no credits left ({error}): top up, then resume"
    if isinstance(error, PermissionDeniedError):
        return f"the API key may not use this endpoint ({error})"
    if on_post and (isinstance(error, NotFoundError) or _status(error) == 405):
        return f"the remove-background endpoint answered {error}: {_BASE_URL_HINT}"
    if isinstance(error, ConfigurationError):
        return str(error)  # the client's set-up (an HTTP backend this event loop cannot run)
    if isinstance(error, SinkError):
        return (
            f"results cannot be stored ({error}): fix the destination, then resume within "
            "5 minutes: what was paid for is downloaded then from the journal's links, "
            "without paying again"
        )
    if isinstance(error, StagingError):
        return f"local images cannot be staged ({error}): fix the staging bucket, then resume"
    return None


@attrs.define(slots=True)
class Breaker:
    """Trips once on a batch-wide failure; remembers why.

    ``max_retry_after`` is the retry policy's cap: a 429 demanding a longer
    wait is a temporary block, and every other request would be refused too.
    """

    max_retry_after: float
    fail_fast: bool = False
    ambiguous_limit: int = AMBIGUOUS_RUN_LIMIT
    error: FreepikError | None = None
    reason: str | None = None
    _connect_run: int = 0
    _garbage_run: int = 0
    _ambiguous_run: int = 0
    _answered: bool = False  # a POST got through: the base URL is the API's

    @property
    def tripped(self) -> bool:
        """True once the batch must stop submitting."""
        return self.error is not None

    def trip(self, error: FreepikError, reason: str) -> None:
        """Stop the batch for ``reason``; only the first trip counts."""
        if self.error is None:
            self.error, self.reason = error, reason
            logger.error("stopping the batch: %s", reason)

    def not_attempted(self) -> SkippedError:
        """The error of an item that was not sent because the breaker tripped."""
        return SkippedError(f"not attempted: {self.reason}", cause=self.error)

    def post_succeeded(self) -> None:
        """A POST got through: the API host is reachable and answers as the API."""
        self._connect_run = self._garbage_run = self._ambiguous_run = 0
        self._answered = True

    def attempt_failed(self, error: FreepikError, *, on_post: bool) -> None:
        """One attempt failed (it may still be retried)."""
        if not on_post:
            return
        if isinstance(error, APIResponseValidationError):
            self._garbage_answer(error)
            return
        self._garbage_run = 0  # an answer of another kind: not a run of garbage
        if classify_post_error(error) is Classification.AMBIGUOUS:
            self._ambiguous_failure(error)
        else:
            self._ambiguous_run = 0  # a clear answer (a 400, say): the service works
        if not isinstance(error, APIConnectionError) or error.maybe_processed:
            return
        self._connect_run += 1
        if self._connect_run >= CONNECT_RUN_LIMIT:
            self.trip(
                error,
                f"cannot connect to {_origin(error)} ({self._connect_run} attempts in a row "
                f"failed, the last with: {error}): {_BASE_URL_HINT} and the network",
            )

    def _garbage_answer(self, error: APIResponseValidationError) -> None:
        self._garbage_run += 1
        if self._garbage_run >= GARBAGE_RUN_LIMIT:
            self.trip(
                error,
                f"{self._garbage_run} POSTs in a row were answered with a body that is not "
                f"the API's (the last: {error}); each may have cost a credit: "
                f"{_BASE_URL_HINT}; if it is right, the service is failing: resume later",
            )

    def _ambiguous_failure(self, error: FreepikError) -> None:
        self._ambiguous_run += 1
        if self._ambiguous_run >= self.ambiguous_limit:
            self.trip(
                error,
                f"{self._ambiguous_run} POSTs in a row failed after the service may have "
                f"processed them (the last: {error}); each may have cost a credit: the "
                "service is failing; resume later",
            )

    def item_failed(self, error: FreepikError, *, on_post: bool) -> None:
        """An item failed for good: does that stop everything?"""
        if isinstance(error, SkippedError):
            return
        reason = stop_reason(error, on_post=on_post)
        blocked = (
            isinstance(error, RateLimitError)
            and error.retry_after is not None
            and error.retry_after > self.max_retry_after
        )
        if reason is None and blocked:
            reason = f"the service asked to wait over {self.max_retry_after:.0f} s ({error}): "
            reason += "a temporary block; resume later"
        if reason is None and on_post and not self._answered and _status(error) == 501:
            # A server that takes no POST there (python -m http.server); from the API,
            # once it has answered, a 501 is one item's failure.
            reason = f"the remove-background endpoint answered {error}: {_BASE_URL_HINT}"
        if reason is None and self.fail_fast:
            reason = f"fail_fast (--fail-fast) is on and an item failed: {error}"
        if reason is not None:
            self.trip(error, reason)
