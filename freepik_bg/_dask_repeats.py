"""Repeats of a URL across a Dask run's partitions, for the command's text input.

A batch shares one POST among the occurrences of a URL (its `url_identity`), and a
Dask run's partitions share it through their claims (`_dask_claims`). The command
reads a text INPUT whole before it partitions it, so it drops every later occurrence
first (`Repeats.split`): no partition waits for another's, and each repeat is the
duplicate of the earlier line. It gives each its row after the computation from its
first occurrence's row (`Repeats.rows`), as a batch reports a duplicate: skipped at
the first one's location, or failed with its error. A .parquet INPUT is partitioned by
its file, lazily, and its repeats are shared by the claims.
"""

from __future__ import annotations

from array import array
from typing import Any

import attrs

from ._dedupe import duplicate_key
from ._input import InputLine
from ._u64map import U64Map

__all__ = ["Repeats"]


@attrs.frozen(slots=True)
class Repeats:
    """What was dropped from an input: the input index of each kept entry, and of each
    repeat with its first occurrence's."""

    kept_at: array[int]
    repeats: list[tuple[int, int]]

    @staticmethod
    def split(entries: list[Any]) -> tuple[list[Any], Repeats]:
        """The entries without later occurrences of a URL (unusable lines all kept)."""
        first: U64Map = U64Map()  # 24-48 bytes a URL: the command holds the list already
        kept: list[Any] = []
        kept_at = array("q")  # 8 bytes a line, where a list of ints holds ~36
        repeats: list[tuple[int, int]] = []
        for index, entry in enumerate(entries):
            if isinstance(entry, InputLine):
                key = duplicate_key(entry.url, "")
                earlier = first.get(key)
                if earlier is not None:
                    repeats.append((index, earlier))
                    continue
                first[key] = index
            kept.append(entry)
            kept_at.append(index)
        return kept, Repeats(kept_at, repeats)

    def rows(self, result: Any, entries: list[Any]) -> Any:
        """``result`` (a frame indexed in the kept entries) indexed in the input, with
        a row for each repeat, in input order."""
        import numpy as np
        import pandas as pd

        # No kept entry repeats another, so none is a duplicate: only the index moves.
        result = result.assign(index=np.frombuffer(self.kept_at, dtype="int64")[result["index"]])
        if not self.repeats:
            return result
        by_index = result.set_index("index", drop=False)
        firsts = by_index.loc[[earlier for _, earlier in self.repeats]].reset_index(drop=True)
        stored = firsts["status"] == "ok"
        added = firsts.assign(
            index=np.array([index for index, _ in self.repeats], dtype="int64"),
            image_url=pd.Series([entries[index].url for index, _ in self.repeats], dtype="string"),
            # As a batch reports a duplicate: the first one's outcome, with no POST of its own.
            status=firsts["status"].where(~stored, "skipped"),
            attempts=np.zeros(len(self.repeats), dtype="int64"),
            duplicate_of=pd.Series([earlier for _, earlier in self.repeats], dtype="Int64"),
        )
        return pd.concat([result, added], ignore_index=True).sort_values("index")

    @property
    def count(self) -> int:
        """How many entries were dropped."""
        return len(self.repeats)
