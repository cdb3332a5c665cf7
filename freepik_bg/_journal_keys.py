"""How a journal knows a URL: 64-bit keys of its identity, per rendition and name.

A resume holds one key per stored rendition (`U64Set`), so they are digests, not URLs;
and they are of the URL's `url_identity`, so a list that spells a URL otherwise than the
journal's lines (``HTTPS://``, ``:443``, ``#x``) finds what an earlier run paid for.
"""

from __future__ import annotations

import functools
import hashlib

from ._urls import url_identity

__all__ = ["DEFAULT_SIZE", "digest64", "done_key", "recent_done_key", "recent_url_key", "url_key"]

DEFAULT_SIZE = "high_resolution"


# Changing url_key or done_key: bump _journal_index._FORMAT, so that checkpoints holding
# the old keys are ignored.
def digest64(text: str) -> int:
    # A 64-bit digest as an int keeps a million-entry resume set small (~60 MB
    # less than the URLs themselves), with a collision chance near 1e-8.
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def url_key(url: str) -> int:
    # By the URL's identity, as duplicates are: a resume whose list spells a URL
    # otherwise (HTTPS://, :443, #x) finds what the first run paid for. Keys are
    # computed when lines are read, so lines written before this count too.
    return digest64(url_identity(url))


def done_key(url: str, size: str, name: str | None = None) -> int:
    # Done is per rendition: a high-resolution cutout does not make the preview
    # done. The default size keeps the plain key, so older journals stay valid.
    # A chosen output name (a SKU) is part of it: the same URL under another
    # name is another output.
    if name is not None:
        return digest64(f"{size}\0{name}\0{url_identity(url)}")
    return url_key(url) if size == DEFAULT_SIZE else digest64(f"{size}\0{url_identity(url)}")


# A run asks for an item's keys several times (before its POST: its links, what is
# stored; then for its posted and its stored line), about `concurrency` items apart:
# remember the last ones asked for. Loading calls the plain functions, so that a
# million-line resume does not churn these caches.
recent_url_key = functools.lru_cache(maxsize=1024)(url_key)
_recent_other_key = functools.lru_cache(maxsize=1024)(done_key)


def recent_done_key(url: str, size: str, name: str | None) -> int:
    if name is None and size == DEFAULT_SIZE:
        return recent_url_key(url)  # the same key as done_key's
    return _recent_other_key(url, size, name)
