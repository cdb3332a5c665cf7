"""docs/storage.md's end-to-end example, run as written: moto's S3, the emulator, a folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from freepik_bg.testing import Emulator

from .conftest import make_png
from .storage_fixtures import (
    S3,
    boto_fixture,  # noqa: F401 - fixtures
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
)

DOC = Path(__file__).parent.parent / "docs" / "storage.md"


def example_block(name: str) -> str:
    """The python block that follows ``<!-- tested: name -->`` in the page."""
    match = re.search(rf"<!-- tested: {name} -->\n```python\n(.*?)\n```", DOC.read_text(), re.S)
    assert match is not None, f"docs/storage.md lost its {name} example"
    return match.group(1)


def test_the_end_to_end_example_runs_as_written(
    s3: S3, boto: Any, emu: Emulator, tmp_path: Path
) -> None:
    code = example_block("storage-end-to-end")
    if "my-shop" not in [b["Name"] for b in boto.list_buckets()["Buckets"]]:
        boto.create_bucket(Bucket="my-shop")
    for name, size in {"cover.png": 30, "shoes/red.png": 40, "shoes/blue.png": 50}.items():
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(make_png(size, size))
    env = {**os.environ, "FREEPIK_API_KEY": emu.api_key, "FREEPIK_BASE_URL": emu.base_url}
    for _ in range(2):  # the second run resumes from the journal: nothing is paid twice
        run = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
    listing = boto.list_objects_v2(Bucket="my-shop").get("Contents", [])
    keys = sorted(entry["Key"] for entry in listing)
    assert keys == ["cutouts/cover.png", "cutouts/shoes/blue.png", "cutouts/shoes/red.png"]
    assert emu.stats.credits_charged == 3
    for key in keys:
        boto.delete_object(Bucket="my-shop", Key=key)
