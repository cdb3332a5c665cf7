"""The emulator's knobs: one frozen value, swapped whole when a test changes it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from freepik_bg.testing._faults import FaultRule, check_rules

__all__ = [
    "DEFAULT_API_KEY",
    "MAX_SOURCE_BYTES",
    "REAL_API_RATE_LIMITS",
    "EmulatorConfig",
    "RateLimit",
]

#: The API key an emulator accepts unless told otherwise.
DEFAULT_API_KEY = "test-key"
#: The service's source size limit: 20 MB (taken as 20 MiB).
MAX_SOURCE_BYTES = 20 * 1024 * 1024

LatencyLike = float | tuple[float, float]


@attrs.frozen
class RateLimit:
    """A token bucket per API key: ``burst`` requests at once, refilled at ``rate``/s.

    Example::

        Emulator(rate_limits=[RateLimit(rate=10, burst=20)])
    """

    rate: float = attrs.field()
    burst: float = attrs.field()

    @rate.validator
    def _check_rate(self, _attribute: object, value: float) -> None:
        if not value > 0:
            raise ValueError("rate must be positive")

    @burst.validator
    def _check_burst(self, _attribute: object, value: float) -> None:
        if not value >= 1:
            raise ValueError("burst must be at least 1")


#: An approximation of the real API's documented limits as two token buckets:
#: 50 requests/s sustained over 5 s, and 10 requests/s on average over 2 minutes.
REAL_API_RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit(rate=50.0, burst=250.0),
    RateLimit(rate=10.0, burst=1200.0),
)


def _latency(value: LatencyLike | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        low = high = float(value)
    else:
        low, high = (float(v) for v in value)
    if low < 0 or high < low:
        raise ValueError("latency must be seconds >= 0, or a (low, high) range with low <= high")
    return (low, high)


def _keys(value: Iterable[str]) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(value))  # ordered, without duplicates
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError("api_keys must be one or more non-empty strings")
    return keys


def _limits(value: Iterable[RateLimit]) -> tuple[RateLimit, ...]:
    return tuple(value)


def _rules(value: Iterable[FaultRule]) -> tuple[FaultRule, ...]:
    rules = tuple(value)
    check_rules(rules)
    return rules


@attrs.frozen
class EmulatorConfig:
    """Every runtime knob of the emulator. Change it with ``Emulator.configure(...)``.

    Attributes:
        api_keys: keys accepted in ``x-freepik-api-key``; the first is ``Emulator.api_key``.
        link_ttl: seconds a returned link stays valid (the real service: 300).
        rate_limits: token buckets applied per API key; empty means unlimited.
        retry_after_header: send ``Retry-After`` on 429 answers (the real API does not
            document it, so a client must also cope without).
        latency: added to each POST that reaches processing: seconds, or a
            (low, high) range drawn uniformly.
        download_latency: the same for link downloads.
        fault_rules: random faults, per endpoint, with a probability each.
        fast: serve a cached cutout per source and read the emulator's own samples
            without an HTTP round trip, so benchmarks measure the client.
        invalid_params_style: "top" puts ``invalid_params`` next to ``message``;
            "problem" wraps them as ``{"message", "problem": {"message", "invalid_params"}}``,
            as the real API sometimes does.
        expired_status: the status of a download of an expired link (404 by default).
        fetch_timeout: seconds allowed to fetch ``image_url``.
        max_source_bytes: the source size limit.
        png_compress_level: zlib level of the high-resolution PNG (1 is fast).
    """

    api_keys: tuple[str, ...] = attrs.field(default=(DEFAULT_API_KEY,), converter=_keys)
    link_ttl: float = attrs.field(default=300.0, converter=float)
    rate_limits: tuple[RateLimit, ...] = attrs.field(default=(), converter=_limits)
    retry_after_header: bool = True
    latency: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=_latency)
    download_latency: tuple[float, float] = attrs.field(default=(0.0, 0.0), converter=_latency)
    fault_rules: tuple[FaultRule, ...] = attrs.field(default=(), converter=_rules)
    fast: bool = False
    invalid_params_style: Literal["top", "problem"] = attrs.field(default="top")
    expired_status: int = 404
    fetch_timeout: float = attrs.field(default=10.0, converter=float)
    max_source_bytes: int = MAX_SOURCE_BYTES
    png_compress_level: int = 1

    @link_ttl.validator
    def _check_ttl(self, _attribute: object, value: float) -> None:
        if value < 0:
            raise ValueError("link_ttl must be >= 0")

    @invalid_params_style.validator
    def _check_style(self, _attribute: object, value: str) -> None:
        if value not in ("top", "problem"):
            raise ValueError('invalid_params_style must be "top" or "problem"')

    def with_changes(self, **changes: Any) -> EmulatorConfig:
        """A copy with ``changes``; also understands ``api_key``, ``rate`` and ``burst``.

        ``rate``/``burst`` set a single token bucket (``rate=None`` removes all limits);
        ``api_key`` replaces the accepted keys with that one.
        """
        return attrs.evolve(self, **self.field_changes(changes))

    def field_changes(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The field values that :meth:`with_changes` keywords stand for."""
        changes = dict(changes)
        if "api_key" in changes:
            changes["api_keys"] = (changes.pop("api_key"),)
        if "rate" in changes or "burst" in changes:
            rate = changes.pop("rate", None)
            burst = changes.pop("burst", None)
            changes["rate_limits"] = single_bucket(rate, burst)
        return changes

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reverses it."""
        return {
            "api_keys": list(self.api_keys),
            "link_ttl": self.link_ttl,
            "rate_limits": [[r.rate, r.burst] for r in self.rate_limits],
            "retry_after_header": self.retry_after_header,
            "latency": list(self.latency),
            "download_latency": list(self.download_latency),
            "fault_rules": [r.to_json() for r in self.fault_rules],
            "fast": self.fast,
            "invalid_params_style": self.invalid_params_style,
            "expired_status": self.expired_status,
            "fetch_timeout": self.fetch_timeout,
            "max_source_bytes": self.max_source_bytes,
            "png_compress_level": self.png_compress_level,
        }

    @classmethod
    def changes_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword changes for :meth:`with_changes` from a (partial) :meth:`to_json` dict."""
        changes = dict(data)
        if "rate_limits" in changes:
            changes["rate_limits"] = tuple(RateLimit(*pair) for pair in changes["rate_limits"])
        if "fault_rules" in changes:
            changes["fault_rules"] = tuple(FaultRule.from_json(r) for r in changes["fault_rules"])
        return changes

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Rebuild a config from :meth:`to_json` output."""
        return cls().with_changes(**cls.changes_from_json(data))


def single_bucket(rate: float | None, burst: float | None) -> tuple[RateLimit, ...]:
    """The rate limits for the ``rate``/``burst`` shorthand (burst defaults to max(1, rate))."""
    if rate is None:
        if burst is not None:
            raise ValueError("burst needs a rate")
        return ()
    return (RateLimit(rate=float(rate), burst=float(burst if burst is not None else max(1, rate))),)


class Clock:
    """Monotonic time that tests can move forward without sleeping.

    Link expiry and rate-limit refills read this clock; latency and stalls use real time.
    """

    def __init__(self, source: Callable[[], float] | None = None) -> None:
        self._source = source or time.monotonic
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._source() + self._offset

    @property
    def offset(self) -> float:
        """The seconds :meth:`advance` has added so far."""
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset += seconds


class RateLimiter:
    """Token buckets per (API key, limit). All access happens on the server's loop."""

    def __init__(self) -> None:
        self._limits: tuple[RateLimit, ...] = ()
        self._buckets: dict[tuple[str, int], tuple[float, float]] = {}

    def acquire(self, key: str, limits: tuple[RateLimit, ...], now: float) -> float | None:
        """Take one token from every bucket and return None, or the seconds to wait."""
        if limits != self._limits:
            # New limits start full: a test that tightens them wants the burst first.
            self._limits = limits
            self._buckets.clear()
        if not limits:
            return None
        levels = []
        wait = 0.0
        for index, limit in enumerate(limits):
            tokens, updated = self._buckets.get((key, index), (limit.burst, now))
            tokens = min(limit.burst, tokens + max(0.0, now - updated) * limit.rate)
            levels.append(tokens)
            if tokens < 1.0:
                wait = max(wait, (1.0 - tokens) / limit.rate)
        if wait > 0:
            for index, tokens in enumerate(levels):
                self._buckets[(key, index)] = (tokens, now)
            return wait
        for index, tokens in enumerate(levels):
            self._buckets[(key, index)] = (tokens - 1.0, now)
        return None

    def reset(self) -> None:
        self._buckets.clear()


def retry_after_seconds(wait: float) -> int:
    """``Retry-After`` is whole seconds: round up so a client that obeys it succeeds."""
    return max(1, math.ceil(wait - 1e-9))
