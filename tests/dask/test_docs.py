"""The Dask recipe, run as written: parquet -> cutouts in S3 -> results parquet."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

from freepik_bg import output_name
from freepik_bg.testing import Emulator

from ..conftest import KEY
from ..recipes import recipe_files
from ..storage_fixtures import (
    S3,
    boto_fixture,  # noqa: F401 - fixtures
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
)
from .conftest import image_urls

pytestmark = pytest.mark.dask


def _example() -> str:
    return recipe_files("dask-parquet-s3")["cutouts_on_dask.py"]


def test_the_worked_example_runs(
    cluster: Client,
    emu: Emulator,
    s3: S3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls = image_urls(emu, 5, "docs")
    pd.DataFrame({"sku": [f"SKU-{i}" for i in range(5)], "image_url": urls}).to_parquet(
        tmp_path / "products.parquet"
    )
    # The workers' environment, as the example says: the key and the bucket's credentials.
    env = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    env |= {"FREEPIK_API_KEY": KEY, "FREEPIK_BASE_URL": emu.base_url}
    cluster.run(lambda values: os.environ.update(values), env)
    code = _example()
    code = code.replace("tcp://scheduler:8786", cluster.scheduler.address)
    code = code.replace("my-bucket", s3.bucket)
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, "cutouts_on_dask.py", "exec"), {"__name__": "scale_example"})
        first = capsys.readouterr().out
        posts = emu.stats.posts
        exec(compile(code, "cutouts_on_dask.py", "exec"), {"__name__": "scale_example"})
        second = capsys.readouterr().out
    finally:
        cluster.run(lambda names: [os.environ.pop(name, None) for name in names], list(env))
    assert sorted(s3.keys()) == sorted(f"cutouts/{output_name(u)}" for u in urls)
    results = pd.read_parquet(tmp_path / "results.parquet").sort_values("index")
    assert list(results["image_url"]) == urls
    assert re.search(r"ok\s+5", first), first
    assert posts == 5
    assert re.search(r"skipped\s+5", second), second
    assert emu.stats.posts == 5  # the rerun spent nothing
