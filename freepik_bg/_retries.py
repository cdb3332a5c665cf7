"""Retry policy: what is retried, how long to wait, and what may be billed twice.

A POST that the service processed costs a credit even when its response is
lost, so POST failures fall in three classes:

* surely not processed (connect errors, 429, 503): always retried;
* maybe processed (a read timeout or lost connection after the request was
  sent, 500, 502, 504): retried unless ``retry_ambiguous=False``, and counted;
* rejected (400, 401, 402, 403, 404, 422, ...): never retried.

Downloads (GET) are free and idempotent: they are retried on any transient
failure while the link lives.
"""

from __future__ import annotations

import email.utils
import enum
import importlib
import logging
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from datetime import timezone
from typing import TYPE_CHECKING, TypeVar

import anyio
import attrs

from ._errors import (
    APIConnectionError,
    APIStatusError,
    FreepikError,
    InvalidImageError,
)
from ._models import Operation, RetryEvent

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = [
    "Classification",
    "RetryHook",
    "RetryPolicy",
    "classify_download_error",
    "classify_post_error",
    "hook_errors",
    "parse_retry_after",
    "retry_call",
    "set_testing",
]

logger = logging.getLogger("freepik_bg")

hook_errors: ContextVar[Callable[[Exception], None] | None] = ContextVar(
    "freepik_bg_hook_errors", default=None
)
"""Where an ``on_retry`` hook's exception goes instead of out of the call: set by a batch
runner for its tasks, so that a metrics hook that breaks never drops a paid result."""

T = TypeVar("T")


class Classification(enum.Enum):
    """How a failure relates to billing and retrying."""

    SAFE = "safe"
    """Not processed by the service: retrying cannot bill twice."""
    AMBIGUOUS = "ambiguous"
    """Maybe processed (and billed): a retry may bill again."""
    FATAL = "fatal"
    """Never retried."""


# 501 and 505 mean "this will never work"; the other 5xx may pass.
_FATAL_5XX = frozenset({501, 505})
_SAFE_STATUSES = frozenset({408, 425, 429, 503})


def classify_post_error(exc: BaseException) -> Classification:
    """Classify a failed POST by what it means for billing."""
    if isinstance(exc, APIConnectionError):
        return Classification.AMBIGUOUS if exc.maybe_processed else Classification.SAFE
    if isinstance(exc, APIStatusError):
        if exc.status_code in _SAFE_STATUSES:
            return Classification.SAFE
        if exc.status_code >= 500 and exc.status_code not in _FATAL_5XX:
            return Classification.AMBIGUOUS
    return Classification.FATAL


def classify_download_error(exc: BaseException) -> Classification:
    """Downloads are free: every transient failure is safe to retry."""
    if isinstance(exc, APIConnectionError | InvalidImageError):
        # A truncated or garbled body is usually a broken transfer. A body
        # over the size cap will not shrink, though.
        if isinstance(exc, InvalidImageError) and not exc.transient:
            return Classification.FATAL
        return Classification.SAFE
    if isinstance(exc, APIStatusError) and (
        exc.status_code in _SAFE_STATUSES or exc.status_code >= 500
    ):
        return Classification.SAFE
    return Classification.FATAL


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Garbage,
    negative or non-finite values count as absent.

    Examples:
        >>> parse_retry_after({"retry-after": "3"})
        3.0
        >>> parse_retry_after({"retry-after-ms": "250"})
        0.25
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@attrs.frozen(slots=True)
class RetryPolicy:
    """How failures are retried.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        retry_ambiguous: retry POST failures the service may have billed.
        initial_backoff: the first backoff, doubled at each retry...
        max_backoff: ...up to this.
        jitter: a random extra of up to this many seconds, so that many
            clients do not retry in lockstep.
        max_retry_after: a ``Retry-After`` longer than this is not waited
            for; the error is raised at once, carrying the demand.
    """

    max_retries: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    retry_ambiguous: bool = True
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 60.0


RetryHook = Callable[[RetryEvent], object]


@attrs.define(slots=True)
class _TestingState:
    enabled: bool = False
    attempts: int | None = None


_TESTING = _TestingState()


class _TestingContext:
    """Restores the previous testing state on exit; inert when not used as a context."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int | None]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        _TESTING.enabled, _TESTING.attempts = self._previous


def set_testing(enabled: bool, *, attempts: int | None = None) -> _TestingContext:
    """Turn backoff off (for your test suite), like ``stamina.set_testing``.

    With testing on, every retry happens at once, ``Retry-After`` included,
    and ``attempts``, when given, caps the attempts per operation. It takes
    effect at once; used as a context manager, it also restores the previous
    state on exit.

    Examples:
        >>> import freepik_bg
        >>> with freepik_bg.set_testing(True, attempts=2):
        ...     pass  # retries are instant here
        >>> _ = freepik_bg.set_testing(False)
    """
    context = _TestingContext((_TESTING.enabled, _TESTING.attempts))
    _TESTING.enabled = enabled
    _TESTING.attempts = attempts if enabled else None
    return context


def _retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, APIStatusError) else None


class _Wait:
    """Honour Retry-After when the server sends it, else back off exponentially."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, state: RetryCallState) -> float:
        if _TESTING.enabled:
            return 0.0
        exc = state.outcome.exception() if state.outcome else None
        retry_after = _retry_after_of(exc) if exc is not None else None
        if retry_after is not None:
            return retry_after
        policy = self._policy
        exponent = min(state.attempt_number - 1, 62)
        backoff = policy.initial_backoff * 2.0**exponent
        jitter = random.uniform(0, policy.jitter)  # noqa: S311 - not for cryptography
        return min(policy.max_backoff, backoff + jitter)


async def retry_call(
    fn: Callable[[], Awaitable[T]],
    *,
    operation: Operation,
    url: str,
    policy: RetryPolicy,
    hooks: Sequence[RetryHook] = (),
    deadline: float | None = None,
    before_attempt: Callable[[], Awaitable[None]] | None = None,
) -> tuple[T, int, int]:
    """Call ``fn`` under ``policy``; return (result, attempts, ambiguous retries).

    ``deadline`` (``time.time()`` seconds) stops retrying once the next try
    would start after it, which is how downloads stop at link expiry.
    ``before_attempt`` runs before every attempt (a shared rate limiter).
    On failure the raised `FreepikError` carries ``attempts`` and
    ``ambiguous_retries``.
    """
    classify = classify_post_error if operation == "post" else classify_download_error
    ambiguous = 0
    max_attempts = policy.max_retries + 1
    if _TESTING.attempts is not None:
        max_attempts = min(max_attempts, _TESTING.attempts)

    def should_retry(exc: BaseException) -> bool:
        kind = classify(exc)
        if kind is Classification.FATAL:
            return False
        if kind is Classification.AMBIGUOUS and not policy.retry_ambiguous:
            return False
        retry_after = _retry_after_of(exc)
        return retry_after is None or retry_after <= policy.max_retry_after

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= max_attempts:
            return True
        return deadline is not None and time.time() + state.upcoming_sleep >= deadline

    def before_sleep(state: RetryCallState) -> None:
        nonlocal ambiguous
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, FreepikError)
        is_ambiguous = operation == "post" and classify(exc) is Classification.AMBIGUOUS
        if is_ambiguous:
            ambiguous += 1
        event = RetryEvent(
            operation=operation,
            url=url,
            attempt=state.attempt_number,
            wait=state.upcoming_sleep,
            error=exc,
            ambiguous=is_ambiguous,
        )
        logger.warning(
            "%s %s failed (attempt %d%s): %s; retrying in %.2f s",
            # Not "POST <url>": the POST goes to the API, and the URL is the image's.
            "POST for" if operation == "post" else f"{operation} of",
            # A query may be a signature (a presigned source, a staged file): logs keep the path.
            url.partition("?")[0] + ("?..." if "?" in url else ""),
            state.attempt_number,
            ", may have been billed" if is_ambiguous else "",
            exc,
            state.upcoming_sleep,
        )
        for hook in hooks:
            try:
                hook(event)
            except Exception as exc:
                report = hook_errors.get()
                if report is None:
                    raise  # a single call: the caller's hook fails the call, as itself
                # In a batch: this item goes on (its POST may be paid for), and the batch
                # ends as on a raising progress hook, the error raised as itself.
                report(exc)

    attempts = 0

    async def attempt_once() -> T:
        nonlocal attempts
        if before_attempt is not None:
            await before_attempt()
        attempts += 1
        return await fn()

    # Most calls succeed at once: only a failure pays for tenacity's machinery
    # (tens of microseconds per call, which shows at hundreds of items/s).
    try:
        return await attempt_once(), attempts, ambiguous
    except FreepikError as exc:
        pending: FreepikError | None = exc

    # tenacity is imported at the first failure only: the CLI's start-up and the first
    # POST do not pay for it. That import takes 20 ms, or over 100 where tornado is
    # installed (tenacity imports it; Dask brings it): in a worker thread, so that the
    # event loop goes on with every other item's POST and download meanwhile.
    if "tenacity" not in sys.modules:
        from anyio import to_thread  # (`import anyio.to_thread` would make anyio local here)

        await to_thread.run_sync(importlib.import_module, "tenacity")
    from tenacity import AsyncRetrying, retry_if_exception

    retrying = AsyncRetrying(
        sleep=anyio.sleep,
        stop=stop,
        wait=_Wait(policy),
        retry=retry_if_exception(should_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                if pending is not None:
                    # Tenacity's first attempt is the one that just failed: it
                    # decides, waits, logs and calls the hooks from there.
                    error, pending = pending, None
                    raise error
                result = await attempt_once()
    except FreepikError as exc:
        exc.attempts = attempts
        exc.ambiguous_retries = ambiguous
        raise
    return result, attempts, ambiguous
