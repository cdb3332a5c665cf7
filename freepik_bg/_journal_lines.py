"""The journal's two per-item lines (``posted``, ``stored``), encoded by hand.

A batch writes two lines per item, on the event loop. ``json.dumps`` of a record dict
(with a ``datetime`` formatted for its ``ts``) was most of a journal's cost per item;
these templates make one Python call per line, with every string escaped by the
encoder ``json.dumps(ensure_ascii=False)`` itself uses. They give byte for byte what
``json.dumps(record, ensure_ascii=False, separators=(",", ":"))`` gives for the same
record (same keys, same order), so the loader, older versions and anyone reading the
journal see no difference. A field of an unexpected type (a non-str, a bool for an
int) takes the general path, ``json.dumps`` of the record. ``failed`` lines, rarer
and holding an error, always do.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from json.encoder import encode_basestring as _str  # C, when the json speedups are built
from typing import Any

__all__ = [
    "VERSION",
    "dumps_line",
    "item_record",
    "posted_line",
    "posted_record",
    "stored_line",
    "utc_stamp",
]

VERSION = 1
_SEPARATORS = (",", ":")
_NAME = '"name":'

# The UTC second `utc_stamp` last formatted, and its text without the offset: formatting a
# datetime is most of a stamp's cost, and a batch stamps many lines within one second.
# One tuple, read and replaced whole, so that two threads stamping across a second's
# edge can never pair one's second with the other's text (the GIL happens to rule that
# out for two globals today; a free-threaded build would not).
_second_cache: tuple[int, str] = (-1, "")


def utc_stamp() -> str:
    """Now, as ``datetime.now(timezone.utc).isoformat()`` writes it (to the microsecond).

    Examples:
        >>> utc_stamp().endswith("+00:00")
        True
    """
    global _second_cache
    # Rounded to the microsecond the way datetime.fromtimestamp() rounds.
    fraction, whole = math.modf(time.time())
    second, micro = int(whole), round(fraction * 1_000_000)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    cached_second, text = _second_cache
    if second != cached_second:
        text = datetime.fromtimestamp(second, timezone.utc).isoformat()[: -len("+00:00")]
        _second_cache = (second, text)
    if micro == 0:  # as isoformat(): no fraction at all on a whole second
        return f"{text}+00:00"
    return f"{text}.{micro:06d}+00:00"


def dumps_line(record: dict[str, Any]) -> str:
    """Any record as one journal line: the general path."""
    return json.dumps(record, ensure_ascii=False, separators=_SEPARATORS) + "\n"


def _int(value: object) -> str:
    # int.__repr__ is what json.dumps writes for an int; a bool (an int to int.__repr__,
    # but true/false to json) or anything else goes the general way.
    if value.__class__ is not int:
        raise TypeError(value)
    return int.__repr__(value)


def posted_record(ts: str, index: int, received_at: str, cutout: Any) -> dict[str, Any]:
    """The ``posted`` line's record, in its order (what `posted_line` encodes)."""
    return {
        "v": VERSION,
        "ts": ts,
        "event": "posted",
        "index": index,
        "url": cutout.image_url,
        "received_at": received_at,
        "links": {
            "original": cutout.original,
            "high_resolution": cutout.high_resolution,
            "preview": cutout.preview,
            "url": cutout.url,
        },
    }


def posted_line(ts: str, index: int, received_at: str, cutout: Any) -> str:
    """The ``posted`` line of the `Cutout` ``cutout``: `posted_record`, encoded."""
    try:
        return (
            f'{{"v":{VERSION},"ts":{_str(ts)},"event":"posted","index":{_int(index)}'
            f',"url":{_str(cutout.image_url)},"received_at":{_str(received_at)}'
            f',"links":{{"original":{_str(cutout.original)}'
            f',"high_resolution":{_str(cutout.high_resolution)}'
            f',"preview":{_str(cutout.preview)},"url":{_str(cutout.url)}}}}}\n'
        )
    except TypeError:
        return dumps_line(posted_record(ts, index, received_at, cutout))


def item_record(
    ts: str, event: str, sizes: Sequence[str], name: str | None, result: Any
) -> dict[str, Any]:
    """The record of a ``stored`` or ``failed`` line for the `ItemResult` ``result``
    (a ``stored`` one is what `stored_line` encodes). ``size``, the first of ``sizes``,
    is for readers from before several renditions."""
    record = result.to_record()
    del record["status"]
    head = {"v": VERSION, "ts": ts, "event": event, "size": sizes[0]}
    if event != "stored":
        return {**head, **({} if name is None else {"name": name}), **record}
    # Stored: every rendition named, and no error even when the item failed after them.
    head["sizes"] = sizes
    return {**head, **({} if name is None else {"name": name}), **record} | {"error": None}


def stored_line(ts: str, sizes: Sequence[str], name: str | None, result: Any) -> str:
    """The ``stored`` line: `item_record` of ``"stored"``, encoded."""
    try:
        location, duplicate = result.location, result.duplicate_of
        locations = result.locations
        # All in C: '"key":"value"' per rendition, joined.
        pairs = ",".join(
            map(":".join, zip(map(_str, locations), map(_str, locations.values()), strict=True))
        )
        return (
            f'{{"v":{VERSION},"ts":{_str(ts)},"event":"stored","size":{_str(sizes[0])}'
            f',"sizes":[{",".join(map(_str, sizes))}]'
            f"{'' if name is None else ',' + _NAME + _str(name)}"
            f',"index":{_int(result.index)},"url":{_str(result.image_url)}'
            f',"location":{"null" if location is None else _str(location)}'
            f',"locations":{{{pairs}}},"error":null,"attempts":{_int(result.attempts)}'
            f',"ambiguous_retries":{_int(result.ambiguous_retries)}'
            f',"resubmits":{_int(result.resubmits)}'
            f',"duplicate_of":{"null" if duplicate is None else _int(duplicate)}}}\n'
        )
    except TypeError:
        return dumps_line(item_record(ts, "stored", sizes, name, result))
