"""The link store: results waiting behind their expiring download links."""

from __future__ import annotations

import collections
from typing import Literal

import attrs

__all__ = ["DOWNLOAD_PREFIX", "ORIGINAL_PREFIX", "Job", "LinkStore", "link_urls", "variant"]

DOWNLOAD_PREFIX = "/v1/ai/beta/images/download/"
ORIGINAL_PREFIX = "/v1/ai/beta/images/original/"
# Expired tokens remembered so that a late download says "expired", not "unknown".
_TOMBSTONES = 100_000

#: How a token was issued: the main token (original, high, preview) or the "url" one.
Role = Literal["main", "url"]


@attrs.frozen
class Job:
    """One processed source: its two tokens, its expiry and the bytes its links serve."""

    token: str
    url_token: str
    expires: float
    original: bytes
    original_name: str
    original_type: str
    high: bytes
    preview: bytes


class LinkStore:
    """Issued links. Lives on the server's loop: no locking needed."""

    def __init__(self) -> None:
        self._by_token: dict[str, tuple[Job, Role]] = {}
        self._order: collections.deque[Job] = collections.deque()
        self._expired: collections.OrderedDict[str, None] = collections.OrderedDict()

    def add(self, job: Job) -> None:
        """Make ``job``'s links valid until ``job.expires``."""
        self._by_token[job.token] = (job, "main")
        self._by_token[job.url_token] = (job, "url")
        self._order.append(job)

    def lookup(self, token: str, now: float) -> tuple[Job, Role] | Literal["expired"] | None:
        """The job behind ``token`` and how it was issued, "expired", or None if unknown."""
        self._sweep(now)
        entry = self._by_token.get(token)
        if entry is not None and now >= entry[0].expires:
            self._retire(entry[0])
            return "expired"
        if entry is not None:
            return entry
        return "expired" if token in self._expired else None

    def _sweep(self, now: float) -> None:
        # Jobs are ordered by creation, which is expiry order unless link_ttl changed;
        # lookups re-check expiry, so a late sweep is harmless.
        while self._order and self._order[0].expires <= now:
            self._retire(self._order.popleft())

    def _retire(self, job: Job) -> None:
        for token in (job.token, job.url_token):
            if self._by_token.pop(token, None) is not None:
                self._expired[token] = None
        while len(self._expired) > _TOMBSTONES:
            self._expired.popitem(last=False)


def link_urls(origin: str, job: Job) -> dict[str, str]:
    """The four links of a 200 answer, as absolute URLs on ``origin``."""
    return {
        "original": f"{origin}{ORIGINAL_PREFIX}{job.token}/{job.original_name}",
        "high_resolution": f"{origin}{DOWNLOAD_PREFIX}{job.token}/high.png",
        "preview": f"{origin}{DOWNLOAD_PREFIX}{job.token}/preview.png",
        "url": f"{origin}{DOWNLOAD_PREFIX}{job.url_token}/high.png",
    }


def variant(found: tuple[Job, Role] | None, is_original: bool, filename: str) -> str | None:
    """Which file a link path names ("high_resolution", "url", ...), or None if none."""
    if found is None:
        return None
    job, role = found
    if is_original:
        return "original" if role == "main" and filename == job.original_name else None
    if filename == "high.png":
        return "url" if role == "url" else "high_resolution"
    if filename == "preview.png" and role == "main":
        return "preview"
    return None
