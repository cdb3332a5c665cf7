"""Counters and the request log, recorded by the app and read by tests."""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["EmulatorStats", "RequestRecord", "StatsRecorder"]

_LOG_LIMIT = 10_000


def key_digest(key: str) -> str:
    """The log keeps a digest of each API key sent, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


@attrs.frozen
class RequestRecord:
    """One request the emulator answered (or dropped).

    ``endpoint`` is "post", "download" (any link GET), "sample", "admin" or "other";
    ``status`` is 0 when the connection was reset without a response.
    For POSTs, ``image_url`` is the submitted URL (once the form parsed) and
    ``charged`` says whether the emulator billed a credit for it.

    Examples:
        ```python
        assert not any(r.api_key_sent for r in emu.stats.log if r.endpoint == "download")
        ```
    """

    method: str
    path: str
    endpoint: str
    status: int
    api_key_sent: bool
    api_key_sha256: str | None
    at: float
    image_url: str | None = None
    charged: bool = False

    def sent_key(self, key: str) -> bool:
        """Whether this request carried ``x-freepik-api-key: key``."""
        return self.api_key_sha256 is not None and self.api_key_sha256 == key_digest(key)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


@attrs.frozen
class EmulatorStats:
    """A snapshot of the emulator's counters (``Emulator.stats``).

    Attributes:
        requests: answers by (endpoint, status); see
            [`RequestRecord`][freepik_bg.testing.RequestRecord] for both.
        posts: remove-background POSTs received.
        posts_in_flight: POSTs being handled at the time of the snapshot.
        max_posts_in_flight: the most POSTs handled at once since the last reset.
        links_issued: link URLs returned in 200 answers (four per answer).
        links_downloaded: link GETs answered 200, all variants.
        downloads: link GETs answered 200, by "high_resolution", "url", "preview",
            "original".
        links_expired: GETs of links past their ``link_ttl``.
        credits_charged: POSTs processed, whether or not the answer reached the client
            (a fault after processing, or a client that gave up, is still charged).
        faults_injected: faults drawn, by "<endpoint>:<kind>".
        log: the last 10,000 requests, oldest first.

    Examples:
        ```python
        stats = emu.stats
        print(stats.count("post", 200), "answered 200,", stats.credits_charged, "credits charged")
        ```
    """

    requests: Mapping[tuple[str, int], int] = attrs.field(factory=dict)
    posts: int = 0
    posts_in_flight: int = 0
    max_posts_in_flight: int = 0
    links_issued: int = 0
    links_downloaded: int = 0
    downloads: Mapping[str, int] = attrs.field(factory=dict)
    links_expired: int = 0
    credits_charged: int = 0
    faults_injected: Mapping[str, int] = attrs.field(factory=dict)
    log: tuple[RequestRecord, ...] = ()

    def count(self, endpoint: str, status: int | None = None) -> int:
        """Requests to ``endpoint``, optionally only those answered with ``status``."""
        return sum(
            n for (e, s), n in self.requests.items() if e == endpoint and status in (None, s)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_json` reverses it."""
        return {
            "requests": [[e, s, n] for (e, s), n in sorted(self.requests.items())],
            "posts": self.posts,
            "posts_in_flight": self.posts_in_flight,
            "max_posts_in_flight": self.max_posts_in_flight,
            "links_issued": self.links_issued,
            "links_downloaded": self.links_downloaded,
            "downloads": dict(self.downloads),
            "links_expired": self.links_expired,
            "credits_charged": self.credits_charged,
            "faults_injected": dict(self.faults_injected),
            "log": [r.to_json() for r in self.log],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmulatorStats:
        """Rebuild a snapshot from `to_json` output (as served by the admin API)."""
        return cls(
            requests={(e, int(s)): int(n) for e, s, n in data["requests"]},
            posts=data["posts"],
            posts_in_flight=data["posts_in_flight"],
            max_posts_in_flight=data["max_posts_in_flight"],
            links_issued=data["links_issued"],
            links_downloaded=data["links_downloaded"],
            downloads=dict(data["downloads"]),
            links_expired=data["links_expired"],
            credits_charged=data["credits_charged"],
            faults_injected=dict(data["faults_injected"]),
            log=tuple(RequestRecord(**r) for r in data["log"]),
        )


class StatsRecorder:
    """The mutable counters behind `EmulatorStats`.

    Written on the server's loop and read from the test's thread, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self._posts = 0
        self._max_in_flight = 0
        self._links_issued = 0
        self._downloads: collections.Counter[str] = collections.Counter()
        self._expired = 0
        self._credits = 0
        self._faults: collections.Counter[str] = collections.Counter()
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=_LOG_LIMIT)

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()
            # POSTs still in flight decrement on their way out, so they stay counted.
            self._max_in_flight = self._in_flight

    def post_started(self) -> None:
        with self._lock:
            self._posts += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def post_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def charged(self) -> None:
        with self._lock:
            self._credits += 1

    def issued(self, links: int) -> None:
        with self._lock:
            self._links_issued += links

    def downloaded(self, variant: str) -> None:
        with self._lock:
            self._downloads[variant] += 1

    def expired(self) -> None:
        with self._lock:
            self._expired += 1

    def fault(self, endpoint: str, kind: str) -> None:
        with self._lock:
            self._faults[f"{endpoint}:{kind}"] += 1

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests[(record.endpoint, record.status)] += 1
            self._log.append(record)

    def snapshot(self) -> EmulatorStats:
        with self._lock:
            return EmulatorStats(
                requests=dict(self._requests),
                posts=self._posts,
                posts_in_flight=self._in_flight,
                max_posts_in_flight=self._max_in_flight,
                links_issued=self._links_issued,
                links_downloaded=sum(self._downloads.values()),
                downloads=dict(self._downloads),
                links_expired=self._expired,
                credits_charged=self._credits,
                faults_injected=dict(self._faults),
                log=tuple(self._log),
            )
