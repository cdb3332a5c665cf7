"""Sharing one image's POST with batches that run elsewhere: what the runner asks.

A batch shares one POST among the occurrences of an image inside itself
(`Duplicates`). A Dask computation is one batch per partition, so two
partitions holding the same image would each pay for it. A runner given
`Claims` asks them before it pays for (or stores) an item: either this batch
does the work, and says how it ended (`Claims.settle`), or another batch did
(or is doing) it, and this item shares that outcome as a duplicate does.

It is asked after the item was found missing from the destination, only for
items that are to be stored: an item already stored costs no question.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from ._models import ItemResult

__all__ = ["Claims", "shared_or_own"]


class Claims(Protocol):
    """Who stores each image among batches that run at once (see the module's docstring)."""

    async def claim(self, url: str, index: int, *, post: bool) -> ItemResult | None:
        """``None`` if this batch stores ``url`` (the item at ``index``), which must then
        `settle`; else the duplicate's result this item gets, as `Duplicates.follow`
        gives it: ``duplicate_of`` the item elsewhere (in this batch's numbering),
        skipped if that one stored it, or failed with its error.

        ``post``: the item is to be POSTed (not downloaded from links paid earlier).
        """
        ...

    def settle(self, url: str, index: int, result: ItemResult | None) -> None:
        """The claimed item ended with ``result``; ``None``: it was interrupted first."""
        ...


async def shared_or_own(
    claims: Claims,
    url: str,
    index: int,
    own: Callable[[], Awaitable[ItemResult]],
    *,
    post: bool,
) -> ItemResult:
    """The result of ``own()`` if this batch may store ``url``, else the one it shares."""
    shared = await claims.claim(url, index, post=post)
    if shared is not None:
        return shared
    try:
        result = await own()
    except BaseException:
        claims.settle(url, index, None)
        raise
    claims.settle(url, index, result)
    return result
