"""Value objects returned by the client and the batch runner."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Literal

import attrs

from ._errors import APIResponseValidationError, FreepikError, describe_body

__all__ = ["LINK_TTL", "SIZES", "BatchReport", "Cutout", "ItemResult", "Size"]

Size = Literal["high_resolution", "preview", "original"]
"""Which rendition to download: the full-resolution cutout, the small preview, or the source."""

SIZES: tuple[Size, ...] = ("high_resolution", "preview", "original")

LINK_TTL = timedelta(minutes=5)
"""How long the service keeps result links alive."""

_LINK_FIELDS = ("original", "high_resolution", "preview", "url")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
    received_at: datetime = attrs.field(factory=_utc_now)
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
        if size == "original":
            return self.original
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds until the links expire (negative once they have)."""
        return (self.expires_at - (now or _utc_now())).total_seconds()

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
        received = received_at or _utc_now()
        return cls(
            original=links["original"],
            high_resolution=links["high_resolution"],
            preview=links["preview"],
            url=links["url"],
            image_url=image_url,
            received_at=received,
            expires_at=received + LINK_TTL,
        )


@attrs.frozen(slots=True)
class ItemResult:
    """What happened to one URL of a batch.

    Attributes:
        index: the URL's position in the input (0-based).
        image_url: the URL.
        ok: True when the cutout is stored (or was already, see ``skipped``).
        path: where the bytes went: a file path, or the sink's key.
        cutout: the service's answer, when there was one.
        error: the typed exception, when the item failed.
        attempts: POSTs made for this item (0 when skipped).
        ambiguous_retries: retries after failures that may have been billed.
        resubmits: times the item was submitted again because its link expired.
        skipped: True when no request was needed (output exists, or journal says done).
        queued_at, posted_at, downloaded_at: monotonic timestamps (``anyio.current_time``).
    """

    index: int
    image_url: str
    ok: bool
    path: str | None = None
    cutout: Cutout | None = None
    error: FreepikError | None = None
    attempts: int = 0
    ambiguous_retries: int = 0
    resubmits: int = 0
    skipped: bool = False
    queued_at: float | None = None
    posted_at: float | None = None
    downloaded_at: float | None = None

    @property
    def status(self) -> Literal["ok", "failed", "skipped"]:
        """``"skipped"``, ``"ok"`` or ``"failed"``."""
        if self.skipped:
            return "skipped"
        return "ok" if self.ok else "failed"


@attrs.frozen(slots=True)
class BatchReport:
    """The outcome of :meth:`AsyncClient.run_batch`.

    Example:
        >>> report = await client.run_batch(urls, "out/")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
        1000 items: 998 succeeded, 2 failed, 0 skipped in 101.2 s (9.9 items/s)
    """

    succeeded: tuple[ItemResult, ...]
    failed: tuple[ItemResult, ...]
    skipped: tuple[ItemResult, ...]
    elapsed: float
    posts: int = 0

    @property
    def total(self) -> int:
        """Items seen."""
        return len(self.succeeded) + len(self.failed) + len(self.skipped)

    @property
    def items_per_second(self) -> float:
        """Finished items (succeeded or failed) per second of wall time."""
        done = len(self.succeeded) + len(self.failed)
        return done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failed

    def summary(self) -> str:
        """A one-line human summary."""
        return (
            f"{self.total} items: {len(self.succeeded)} succeeded, {len(self.failed)} failed, "
            f"{len(self.skipped)} skipped in {self.elapsed:.1f} s "
            f"({self.items_per_second:.1f} items/s)"
        )
