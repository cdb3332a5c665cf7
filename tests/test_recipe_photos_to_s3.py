"""docs/recipes/photos-to-s3.md, run as written against moto's S3 and the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from freepik_bg.testing import Emulator

from .conftest import cli_env, make_png
from .recipes import write_recipe
from .storage_fixtures import (
    S3,
    boto_fixture,  # noqa: F401 - fixtures
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
)


def test_photos_to_s3_recipe_stages_stores_and_resumes(
    s3: S3, boto: Any, emu: Emulator, tmp_path: Path
) -> None:
    files = write_recipe("photos-to-s3", tmp_path)
    lifecycle = json.loads(files["lifecycle.json"].read_text())
    boto.put_bucket_lifecycle_configuration(Bucket=s3.bucket, LifecycleConfiguration=lifecycle)
    for name, size in {"cover.png": 30, "shoes/red.png": 40, "shoes/blue.png": 50}.items():
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "photos" / name).write_bytes(make_png(size, size))
    (tmp_path / "photos" / "scan.jpg").write_bytes(b"%PDF-1.7 not a photo")
    env = {**cli_env(), "FREEPIK_API_KEY": emu.api_key, "FREEPIK_BASE_URL": emu.base_url}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(files["photos_to_s3.py"]), "photos/", s3.url()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert "3 stored, 0 already there, 1 failed" in first.stdout
    assert "scan.jpg" in first.stderr
    assert "looks like a PDF" in first.stderr
    assert sorted(s3.keys()) == [
        "cutouts/cover.png",
        "cutouts/shoes/blue.png",
        "cutouts/shoes/red.png",
    ]  # and nothing left under staging/
    again = run()
    assert "0 stored, 3 already there, 1 failed" in again.stdout
    assert emu.stats.credits_charged == 3
