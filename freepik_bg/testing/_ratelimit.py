"""Rate limiting: token buckets per API key, as the real API's limits approximate."""

from __future__ import annotations

import math

from freepik_bg.testing._config import RateLimit

__all__ = ["RateLimiter", "retry_after_seconds"]


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
