"""Bag, Series and DataFrame inputs, empty and all-bad partitions, dtypes, the key, the dest."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import cloudpickle
import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client

import freepik_bg
import freepik_bg.dask as fbd
from freepik_bg.testing import Emulator

from ..conftest import KEY
from .conftest import frame_records, image_urls

pytestmark = pytest.mark.dask

BAD = ["not a url", "ftp://example.com/a.jpg", ""]
DTYPES = {
    "index": "int64",
    "image_url": "string",
    "status": "string",
    "location": "string",
    "error": "string",
    "error_type": "string",
    "attempts": "int64",
    "duplicate_of": "Int64",
}


def _bag_with_empty_and_bad(good: list[str]) -> db.Bag:
    parts = [good[:3], [], BAD, good[3:]]
    return db.from_delayed([dask.delayed(list)(part) for part in parts])


def _check(result: pd.DataFrame, good: list[str], dest: Path) -> None:
    assert {name: str(dtype) for name, dtype in result.dtypes.items()} == DTYPES
    rows = frame_records(result)
    assert [row["index"] for row in rows] == list(range(len(rows)))
    by_url = {row["image_url"]: row for row in rows}
    for url in good:
        assert by_url[url]["status"] == "ok"
        assert by_url[url]["location"] == str(dest / freepik_bg.output_name(url))
        assert by_url[url]["attempts"] == 1
    for bad in BAD:
        assert by_url[bad]["status"] == "failed"
        assert by_url[bad]["attempts"] == 0
        assert "image_url" in by_url[bad]["error"]
        assert pd.isna(by_url[bad]["location"])


def test_a_bag_with_an_empty_partition_and_one_of_only_bad_urls(
    cluster: Client, emu: Emulator, tmp_path: Path
) -> None:
    good = image_urls(emu, 6, "bag")
    frame = fbd.remove_backgrounds(
        _bag_with_empty_and_bad(good), tmp_path, api_key=KEY, base_url=emu.base_url
    )
    assert frame.npartitions == 4
    result = frame.compute()
    assert len(result) == len(good) + len(BAD)
    _check(result, good, tmp_path)
    # Stable dtypes: the frame goes to parquet and back as it is.
    frame.to_parquet(tmp_path / "results.parquet")
    assert emu.stats.posts == len(good)  # already stored: the second run is all skips
    again = dd.read_parquet(tmp_path / "results.parquet").compute()
    assert sorted(again["index"]) == list(range(len(result)))
    assert set(again["status"]) == {"skipped", "failed"}


def test_a_series_and_a_dataframe_column(cluster: Client, emu: Emulator, tmp_path: Path) -> None:
    good = image_urls(emu, 6, "frame")
    table = pd.DataFrame({"sku": range(9), "url": good[:3] + BAD + good[3:]})
    table["url"] = table["url"].astype("string")
    products = dd.from_pandas(table, npartitions=3)
    by_column = fbd.remove_backgrounds(
        products, tmp_path / "a", column="url", api_key=KEY, base_url=emu.base_url
    ).compute()
    _check(by_column, good, tmp_path / "a")
    series = fbd.remove_backgrounds(
        products["url"], tmp_path / "b", api_key=KEY, base_url=emu.base_url
    ).compute()
    _check(series, good, tmp_path / "b")
    assert list(series.sort_values("index")["image_url"]) == list(table["url"])


def test_wrong_inputs_are_refused_before_anything_runs(tmp_path: Path) -> None:
    table = dd.from_pandas(pd.DataFrame({"url": ["https://x.test/a.jpg"]}), npartitions=1)
    with pytest.raises(TypeError, match="column="):
        fbd.remove_backgrounds(table, tmp_path)
    with pytest.raises(KeyError, match="'image' is not in the DataFrame"):
        fbd.remove_backgrounds(table, tmp_path, column="image")
    with pytest.raises(TypeError, match="only for a Dask DataFrame"):
        fbd.remove_backgrounds(table["url"], tmp_path, column="url")
    with pytest.raises(TypeError, match=r"dask\.bag\.Bag"):
        fbd.remove_backgrounds(["https://x.test/a.jpg"], tmp_path)
    with pytest.raises(TypeError, match="journal= is not an option"):
        fbd.remove_backgrounds(table["url"], tmp_path, journal="j.jsonl")
    with pytest.raises(TypeError, match="unknown batch option"):
        fbd.remove_backgrounds(table["url"], tmp_path, concurency=3)
    with pytest.raises(ValueError, match="rate"):
        fbd.remove_backgrounds(table["url"], tmp_path, rate=-1)
    with pytest.raises(freepik_bg.ConfigurationError, match="cannot hold outputs"):
        fbd.remove_backgrounds(table["url"], "https://example.com/out/")
    for empty in ("", "  "):
        with pytest.raises(freepik_bg.ConfigurationError, match="is empty"):
            fbd.remove_backgrounds(table["url"], empty)


def test_the_key_is_not_in_the_task_graph(cluster: Client, emu: Emulator, tmp_path: Path) -> None:
    urls = db.from_sequence(image_urls(emu, 4, "key"), npartitions=2)
    frame = fbd.remove_backgrounds(urls, tmp_path, api_key=KEY, base_url=emu.base_url)
    graph = dict(frame.__dask_graph__())
    for blob in (cloudpickle.dumps(graph), pickle.dumps(frame), repr(graph).encode()):
        assert KEY.encode() not in blob
    # ... and yet the workers (other processes) have it.
    assert set(frame.compute()["status"]) == {"ok"}


def test_without_a_key_the_workers_read_their_environment(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = db.from_sequence(image_urls(emu, 3, "env"), npartitions=2)
    frame = fbd.remove_backgrounds(urls, tmp_path / "no-key", base_url=emu.base_url)
    with pytest.raises(freepik_bg.ConfigurationError, match="FREEPIK_API_KEY"):
        frame.compute(scheduler="threads")
    monkeypatch.setenv("FREEPIK_API_KEY", KEY)
    # A fresh destination: Dask raises at the first failed partition, and the other
    # one may start only now, read the key just set, and store into the first one.
    frame = fbd.remove_backgrounds(urls, tmp_path / "with-key", base_url=emu.base_url)
    assert set(frame.compute(scheduler="threads")["status"]) == {"ok"}


def test_a_directory_a_worker_cannot_see_is_a_clear_error(
    cluster: Client, emu: Emulator, tmp_path: Path
) -> None:
    urls = db.from_sequence(image_urls(emu, 2, "unshared"), npartitions=1)
    frame = fbd.remove_backgrounds(urls, tmp_path, api_key=KEY, base_url=emu.base_url)
    # As on another machine: the directory is there, but not the one the caller wrote to.
    for marker in (tmp_path / ".freepik-bg-dask").glob("job-*"):
        marker.unlink()
    with pytest.raises(freepik_bg.ConfigurationError, match="shared filesystem or object storage"):
        frame.compute()
    assert emu.stats.posts == 0


def test_importing_freepik_bg_or_its_cli_does_not_import_dask() -> None:
    code = (
        "import sys, freepik_bg, freepik_bg._cli; freepik_bg._cli.build_parser(); "
        "loaded = [m for m in ('dask', 'distributed', 'pandas') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
