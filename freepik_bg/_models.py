"""Value objects: what the client returns, what a batch reports, and its events."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import attrs

from ._error_responses import describe_body
from ._errors import APIResponseValidationError, FreepikError, error_record

__all__ = [
    "LINK_TTL",
    "SIZES",
    "BatchReport",
    "BatchStats",
    "Cutout",
    "ItemResult",
    "ProgressEvent",
    "ProgressHook",
    "ProgressKind",
    "RetryEvent",
    "Size",
    "check_size",
    "check_sizes",
    "normalize_sizes",
    "parse_sizes",
    "utc_now",
]

Size = Literal["high_resolution", "preview", "original"]
"""Which rendition to download: the full-resolution cutout, the small preview, or the source."""

SIZES: tuple[Size, ...] = ("high_resolution", "preview", "original")

LINK_TTL = timedelta(minutes=5)
"""How long the service keeps result links alive."""

_LINK_FIELDS = ("original", "high_resolution", "preview", "url")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def check_size(size: object) -> Size:
    """``size`` if it names a rendition, else a ``ValueError`` listing the valid ones."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return size  # type: ignore[return-value,unused-ignore]  # `in` narrows it for some mypys


def check_sizes(size: object) -> None:
    """A rendition name, or a non-empty sequence of distinct ones; else a ``ValueError``."""
    if isinstance(size, str):
        check_size(size)
        return
    if not isinstance(size, Sequence) or not size:
        raise ValueError(
            f"size must be one of {', '.join(SIZES)}, or a non-empty tuple of them; got {size!r}"
        )
    for name in size:
        check_size(name)
    if len(set(size)) != len(size):
        raise ValueError(f"size names a rendition twice: {size!r}")


def normalize_sizes(size: object) -> object:
    """A list of sizes as a tuple, so that the configuration stays hashable."""
    return tuple(size) if isinstance(size, list) else size


def parse_sizes(text: str) -> Size | tuple[Size, ...]:
    """``high_resolution`` or ``high_resolution,preview`` (the CLI's ``--size``).

    Examples:
        >>> parse_sizes("high_resolution, preview")
        ('high_resolution', 'preview')
        >>> parse_sizes("preview")
        'preview'
    """
    names = tuple(part.strip() for part in text.split(","))
    check_sizes(names)
    return names[0] if len(names) == 1 else names  # type: ignore[return-value]


@attrs.frozen(slots=True)
class Cutout:
    """The result of one background removal: four short-lived links.

    The links expire at ``expires_at`` (5 minutes after the response), so
    download them straight away, e.g. with ``client.download_to``.

    Attributes:
        original: the source image as the service fetched it.
        high_resolution: the full-resolution PNG cutout (up to 25 megapixels).
        preview: a small PNG cutout (up to 0.25 megapixels).
        url: the direct download link of the high-resolution cutout.
        image_url: the URL that was submitted.
        received_at: when the response arrived (UTC).
        expires_at: ``received_at`` plus 5 minutes.
        attempts: how many POSTs this result took.
        ambiguous_retries: how many of those retries followed a failure the
            service may have billed.
    """

    original: str
    high_resolution: str
    preview: str
    url: str
    image_url: str
    received_at: datetime = attrs.field(factory=utc_now)
    expires_at: datetime = attrs.field()
    attempts: int = 1
    ambiguous_retries: int = 0

    @expires_at.default
    def _expires_default(self) -> datetime:
        return self.received_at + LINK_TTL

    def link(self, size: Size) -> str:
        """The link for ``size``; ``"high_resolution"`` prefers ``high_resolution`` over ``url``."""
        if size == "high_resolution":
            return self.high_resolution or self.url
        if size == "preview":
            return self.preview
        check_size(size)
        return self.original

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds until the links expire (negative once they have)."""
        return (self.expires_at - (now or utc_now())).total_seconds()

    @property
    def expired(self) -> bool:
        """True once ``expires_at`` has passed by our clock."""
        return self.seconds_left() <= 0

    @classmethod
    def from_response(
        cls,
        payload: object,
        *,
        image_url: str,
        received_at: datetime | None = None,
        status_code: int = 200,
    ) -> Cutout:
        """Parse a 200 body: tolerant of extra fields, strict about the four links.

        A body wrapped as ``{"data": {...}}`` is accepted too, since other
        Freepik endpoints answer that way.
        """
        if (
            isinstance(payload, Mapping)
            and isinstance(payload.get("data"), Mapping)
            and not any(name in payload for name in _LINK_FIELDS)
        ):
            payload = payload["data"]
        if not isinstance(payload, Mapping):
            raise APIResponseValidationError(
                f"expected a JSON object with result links, got {describe_body(payload)}",
                status_code=status_code,
                body=payload,
            )
        links: dict[str, str] = {}
        for name in _LINK_FIELDS:
            value = payload.get(name)
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                links[name] = value
        # `url` and `high_resolution` are the same rendition; one may stand in for the other.
        if "url" not in links and "high_resolution" in links:
            links["url"] = links["high_resolution"]
        if "high_resolution" not in links and "url" in links:
            links["high_resolution"] = links["url"]
        missing = [name for name in _LINK_FIELDS if name not in links]
        if missing:
            raise APIResponseValidationError(
                f"response lacks valid link(s) {', '.join(missing)}: {describe_body(payload)}",
                status_code=status_code,
                body=payload,
            )
        received = received_at or utc_now()
        return cls(
            original=links["original"],
            high_resolution=links["high_resolution"],
            preview=links["preview"],
            url=links["url"],
            image_url=image_url,
            received_at=received,
            expires_at=received + LINK_TTL,
        )


Status = Literal["ok", "failed", "skipped"]


@attrs.frozen(slots=True)
class ItemResult:
    """What happened to one URL of a batch.

    ``status`` is ``"ok"`` (stored by this run), ``"skipped"`` (already stored
    by an earlier run: no request was made) or ``"failed"``.

    Attributes:
        index: the URL's position in the input (0-based).
        image_url: the URL.
        ok: True when the cutout is stored (by this run or an earlier one).
        location: where the bytes are: a file path, or the sink's key (of the
            first rendition, when several were asked for).
        locations: every rendition stored, by size (``{"preview": ...}``);
            on a failed item, the renditions stored before it failed.
        cutout: the service's answer, when there was one.
        error: the typed exception, when the item failed.
        attempts: POSTs made for this item (0 when skipped or a duplicate).
        ambiguous_retries: retries after failures that may have been billed.
        resubmits: times the item was submitted again because its link expired.
        skipped: True when no request was needed (output exists, or journal says stored).
        duplicate_of: the index of an earlier item with the same URL whose
            POST and output this item shares (no credit was spent for it).
        queued_at, posted_at, stored_at: monotonic timestamps (``anyio.current_time``).

    Examples:
        >>> item = ItemResult(index=0, image_url="https://example.com/a.jpg", ok=True)
        >>> item.status
        'ok'
    """

    index: int
    image_url: str
    ok: bool
    location: str | None = None
    cutout: Cutout | None = None
    error: FreepikError | None = None
    attempts: int = 0
    ambiguous_retries: int = 0
    resubmits: int = 0
    skipped: bool = False
    duplicate_of: int | None = None
    queued_at: float | None = None
    posted_at: float | None = None
    stored_at: float | None = None
    # Not hashed: a dict is not hashable, and the outcome is already told by the rest.
    locations: Mapping[Size, str] = attrs.field(factory=dict, hash=False)

    @property
    def status(self) -> Status:
        """``"skipped"``, ``"ok"`` or ``"failed"``."""
        if self.skipped:
            return "skipped"
        return "ok" if self.ok else "failed"

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict of the outcome, as reports and journals write it.

        Examples:
            >>> ItemResult(index=3, image_url="https://example.com/a.jpg", ok=False).to_record()[
            ...     "status"
            ... ]
            'failed'
        """
        return {
            "index": self.index,
            "url": self.image_url,
            "status": self.status,
            "location": self.location,
            "locations": dict(self.locations),
            "error": error_record(self.error),
            "attempts": self.attempts,
            "ambiguous_retries": self.ambiguous_retries,
            "resubmits": self.resubmits,
            "duplicate_of": self.duplicate_of,
        }


@attrs.frozen(slots=True)
class BatchReport:
    """The outcome of `AsyncClient.run_batch`: every item, sorted by outcome.

    Examples:
        >>> report = BatchReport(stored=(), failed=(), skipped=(), elapsed=1.0)
        >>> print(report.summary())
        0 items: 0 stored, 0 failed, 0 skipped in 1.0 s (0.0 items/s)
    """

    stored: tuple[ItemResult, ...]
    failed: tuple[ItemResult, ...]
    skipped: tuple[ItemResult, ...]
    elapsed: float
    posts: int = 0
    stopped_by: FreepikError | None = None
    stop_reason: str | None = None

    @property
    def total(self) -> int:
        """Items seen."""
        return len(self.stored) + len(self.failed) + len(self.skipped)

    @property
    def items_per_second(self) -> float:
        """Finished items (stored or failed) per second of wall time."""
        done = len(self.stored) + len(self.failed)
        return done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failed

    def summary(self) -> str:
        """A one-line human summary."""
        return (
            f"{self.total} items: {len(self.stored)} stored, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped in {self.elapsed:.1f} s "
            f"({self.items_per_second:.1f} items/s)"
        )


Operation = Literal["post", "download"]


@attrs.frozen(slots=True)
class RetryEvent:
    """Passed to ``on_retry`` hooks just before the SDK sleeps and retries.

    Attributes:
        operation: ``"post"`` or ``"download"``.
        url: the image URL (for a POST) or the result link (for a download).
        attempt: the attempt that just failed, from 1.
        wait: seconds until the next attempt.
        error: why it failed.
        ambiguous: the failed POST may have been billed.
    """

    operation: Operation
    url: str
    attempt: int
    wait: float
    error: FreepikError
    ambiguous: bool


class ProgressKind(enum.Enum):
    """What a `ProgressEvent` reports, in an item's life: queued, posted, stored."""

    QUEUED = "queued"
    """An item was pulled from the input and started."""
    POSTED = "posted"
    """The service answered with links (a credit was spent)."""
    RETRIED = "retried"
    """A request failed and will be retried (``retry`` says why)."""
    STORED = "stored"
    """An item is stored (``result`` is set)."""
    FAILED = "failed"
    """An item failed for good (``result`` is set)."""
    SKIPPED = "skipped"
    """An item needed no request (``result`` is set)."""


@attrs.frozen(slots=True)
class ProgressEvent:
    """Passed to a batch's ``progress`` hook as things happen.

    Examples:
        >>> def progress(event: ProgressEvent) -> None:
        ...     if event.kind is ProgressKind.POSTED:
        ...         print("paid for", event.image_url)
        >>> config = BatchConfig(progress=progress)
    """

    kind: ProgressKind
    index: int
    image_url: str
    result: ItemResult | None = None
    retry: RetryEvent | None = None


ProgressHook = Callable[[ProgressEvent], object]
"""A callable given each `ProgressEvent`; it runs on the event loop, so keep it quick."""


@attrs.define(slots=True)
class BatchStats:
    """Live counters of a running batch (read them from a progress hook or a UI).

    Examples:
        >>> BatchStats().finished
        0
    """

    queued: int = 0
    stored: int = 0
    failed: int = 0
    skipped: int = 0
    posts: int = 0
    retries: int = 0
    ambiguous_retries: int = 0
    resubmits: int = 0
    throttled: int = 0
    duplicates: int = 0
    in_flight: int = 0
    concurrency: int = 0

    @property
    def finished(self) -> int:
        """Items that reached a final state."""
        return self.stored + self.failed + self.skipped
