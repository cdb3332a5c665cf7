"""A text INPUT's repeats on Dask: dropped before partitioning, reported after."""

from __future__ import annotations

import pandas as pd
import pytest

from freepik_bg._dask_job import COLUMNS
from freepik_bg._dask_repeats import Repeats
from freepik_bg._input import BadLine, InputLine

pytestmark = pytest.mark.dask


def frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            name: pd.Series([row[name] for row in rows], dtype=dtype)
            for name, dtype in COLUMNS.items()
        }
    )


def row(
    index: int, url: str, status: str, location: str | None, error: str | None
) -> dict[str, object]:
    kind = None if error is None else "BadRequestError"
    return {
        "index": index,
        "image_url": url,
        "status": status,
        "location": location,
        "error": error,
        "error_type": kind,
        "attempts": 1,
        "duplicate_of": None,
    }


def test_repeats_are_dropped_then_reported_with_the_first_ones_outcome() -> None:
    a, b = "https://img.test/a.png", "https://img.test/b.png"
    entries = [
        InputLine(1, a),
        InputLine(2, b),
        BadLine(3, "not valid UTF-8", "\ufffd"),
        InputLine(4, "HTTPS://IMG.test/a.png#x"),  # a, spelled otherwise
        BadLine(5, "not valid UTF-8", "\ufffd"),  # unusable lines are never merged
        InputLine(6, b),
    ]
    kept, repeats = Repeats.split(entries)
    assert kept == [entries[0], entries[1], entries[2], entries[4]]
    assert repeats.count == 2
    # What the partitions return, indexed in the kept entries: a stored, b failed.
    result = frame(
        [
            row(0, a, "ok", "out/a.png", None),
            row(1, b, "failed", None, "400: Failed to download the image"),
            row(2, "\ufffd", "failed", None, "not valid UTF-8"),
            row(3, "\ufffd", "failed", None, "not valid UTF-8"),
        ]
    )
    remapped = repeats.rows(result, entries)
    assert {name: str(dtype) for name, dtype in remapped.dtypes.items()} == COLUMNS
    rows = remapped.to_dict("records")
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert rows[3]["image_url"] == "HTTPS://IMG.test/a.png#x"
    assert (rows[3]["status"], rows[3]["location"], rows[3]["attempts"]) == (
        "skipped",
        "out/a.png",
        0,
    )
    assert (rows[5]["status"], rows[5]["error"]) == ("failed", "400: Failed to download the image")
    # As a batch says it: the index of the occurrence whose outcome a repeat shares.
    firsts = [None if pd.isna(r["duplicate_of"]) else r["duplicate_of"] for r in rows]
    assert firsts == [None, None, None, 0, None, 1]
    assert rows[5]["error_type"] == "BadRequestError"
    assert rows[4]["image_url"] == "\ufffd"


def test_an_input_without_repeats_is_left_as_it_is() -> None:
    entries = [InputLine(1, "https://img.test/a.png"), InputLine(2, "https://img.test/b.png")]
    kept, repeats = Repeats.split(entries)
    assert kept == entries
    assert repeats.count == 0
