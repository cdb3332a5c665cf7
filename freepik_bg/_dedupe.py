"""Duplicates in one batch: the same (URL, rendition) is paid for and stored once.

The same URL is the same `url_identity`: spellings the service fetches as one
image (``HTTPS://Example.com:443/a.png#top`` and ``https://example.com/a.png``)
are one. The first occurrence does the work; later ones wait for it (if it is
still in flight) and report its outcome as their own, marked ``duplicate_of`` its
index, so every input line still gets a result and the counts add up.
Memory is 24 to 48 bytes per distinct URL: a 64-bit key and the first index, unboxed.
Output names are of the identity too (`output_name`), so a duplicate spelled otherwise
names the first occurrence's file.

A duplicate may want its own output name (another SKU for the same image,
from a name column). It is not paid for again: it downloads the first
occurrence's links into its own name while they live. Only links of named
items are kept, and only for their 5 minutes, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable

import anyio
import attrs

from ._errors import FreepikError, SkippedError
from ._models import Cutout, ItemResult
from ._u64map import U64Map
from ._urls import url_identity

__all__ = ["Duplicates", "duplicate_key"]


def duplicate_key(url: str, size: str) -> int:
    """A 64-bit key for ``url`` (and ``size``): sets of millions stay small.

    Of the URL's `url_identity`: ``HTTPS://Example.com:443/a.png#top`` is
    ``https://example.com/a.png``, one image, paid for once.
    """
    identity = url_identity(url)
    digest = hashlib.blake2b(f"{size}\0{identity}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


@attrs.define(slots=True, eq=False)
class _Leader:
    """The first occurrence, while it is in flight."""

    index: int
    error: FreepikError | None = None
    settled: bool = False
    ended: bool = False
    # Made by the first follower only: most URLs have none, and an event per item costs.
    _done: anyio.Event | None = None

    def end(self) -> None:
        """The leader is finished (settled or abandoned): wake its followers."""
        self.ended = True
        if self._done is not None:
            self._done.set()

    async def wait(self) -> None:
        """Return once the leader has finished."""
        if self.ended:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()


@attrs.define(slots=True)
class Duplicates:
    """Which (URL, rendition) pairs this batch has seen, and how the first one ended."""

    # The leaders in flight (as many as the concurrency), and the first index of each
    # settled success, unboxed (~24 bytes a URL instead of ~110 in a dict).
    _leaders: dict[int, _Leader] = attrs.field(factory=dict)
    _stored: U64Map = attrs.field(factory=U64Map)
    # Failures are rare: only they keep their error, so that duplicates can report it.
    _failed: dict[int, tuple[int, FreepikError]] = attrs.field(factory=dict)
    # Chosen output names: the URL key and the first index.
    _names: dict[str, tuple[int, int]] = attrs.field(factory=dict)
    # Live links of named leaders, oldest first, for duplicates that want their own name.
    _links: OrderedDict[int, tuple[Cutout, str]] = attrs.field(factory=OrderedDict)

    def claim(self, url: str, size: str, index: int) -> int | _Leader | None:
        """``None`` if this is the first occurrence (now the leader), else the first's record."""
        key = duplicate_key(url, size)
        if key in self._failed:
            return self._failed[key][0]
        first = self._stored.get(key)
        if first is not None:
            return first
        leader = self._leaders.get(key)
        if leader is None:
            self._leaders[key] = _Leader(index)
        return leader

    def settle(
        self, url: str, size: str, result: ItemResult, *, keep_name: str | None = None
    ) -> None:
        """The leader finished: record how, and wake its followers.

        ``keep_name``: the leader's chosen output name; its live links are kept
        for duplicates that chose another one.
        """
        key = duplicate_key(url, size)
        leader = self._leaders.pop(key, None)
        if leader is None:  # pragma: no cover - settle follows claim
            return
        leader.settled = True
        if result.ok:
            self._stored[key] = leader.index
            if keep_name is not None and result.cutout is not None:
                self._prune()
                self._links[key] = (result.cutout, keep_name)
        else:
            leader.error = result.error
            if result.error is not None:
                self._failed[key] = (leader.index, result.error)
        leader.end()

    def claim_names(self, names: Iterable[str], url: str, index: int) -> tuple[int, str] | None:
        """An earlier item of another URL with one of the output ``names``, and which name.

        ``None`` when every name is free, and then all are this URL's. Only
        for chosen names (hash-based names differ by URL): two inputs under
        one name would overwrite each other. Every rendition's name counts:
        ``x``'s preview and ``x.preview``'s full size are both ``x.preview.png``.
        All are checked before any is taken, so a refused item holds none.
        """
        key = duplicate_key(url, "")
        wanted = list(names)
        for name in wanted:
            first = self._names.get(name)
            if first is not None and first[0] != key:
                return first[1], name
        for name in wanted:
            self._names.setdefault(name, (key, index))
        return None

    def _prune(self) -> None:
        while self._links:
            key, (cutout, _) = next(iter(self._links.items()))
            if cutout.seconds_left() > 0:
                return
            del self._links[key]

    def links(self, url: str, size: str) -> tuple[Cutout, str] | None:
        """The first occurrence's live links and output name, if it chose a name."""
        kept = self._links.get(duplicate_key(url, size))
        return kept if kept is not None and kept[0].seconds_left() > 5 else None

    def abandon(self, url: str, size: str) -> None:
        """The leader was interrupted: its followers are interrupted too."""
        leader = self._leaders.pop(duplicate_key(url, size), None)
        if leader is not None:
            leader.end()

    async def follow(self, first: int | _Leader, index: int, url: str, size: str) -> ItemResult:
        """This item's result, as a duplicate of ``first``."""
        if isinstance(first, _Leader):
            await first.wait()
            if not first.settled:
                error: FreepikError = SkippedError(
                    f"not attempted: item {first.index}, the same URL, was interrupted"
                )
                return ItemResult(index, url, ok=False, error=error, duplicate_of=first.index)
            first_index = first.index
        else:
            first_index = first
        failed = self._failed.get(duplicate_key(url, size))
        if failed is not None:
            return ItemResult(index, url, ok=False, error=failed[1], duplicate_of=failed[0])
        return ItemResult(index, url, ok=True, skipped=True, duplicate_of=first_index)
