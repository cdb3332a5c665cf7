"""docs/recipes/marketplace.md, run as written against the emulator: pixels, names, a dry run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from freepik_bg.testing import Emulator

from .conftest import cli_env
from .recipes import write_recipe

Image = pytest.importorskip("PIL.Image")


def test_marketplace_recipe_exports_jpegs_on_white_named_by_sku(
    emu: Emulator, tmp_path: Path
) -> None:
    files = write_recipe("marketplace", tmp_path)
    samples = iter(["mug-plain.jpg", "bottle-gradient.jpg", "ball-radial.jpg"])
    feed = files["products.csv"].read_text()
    for line in feed.splitlines()[1:]:
        example = line.rsplit(",", 1)[1]
        feed = feed.replace(example, emu.image_url(next(samples)))
    files["products.csv"].write_text(feed)
    env = {**cli_env(), "FREEPIK_API_KEY": emu.api_key, "FREEPIK_BASE_URL": emu.base_url}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    run = subprocess.run(
        ["bash", str(files["export.sh"])],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "3" in run.stdout + run.stderr  # the dry run's count of items to submit
    assert emu.stats.credits_charged == 3  # the dry run itself spent nothing
    exported = sorted(p.name for p in (tmp_path / "export").glob("*.jpg"))
    assert exported == ["SKU-1001.jpg", "SKU-1002.jpg", "SKU-1003.jpg"]
    for name in exported:
        image = Image.open(io.BytesIO((tmp_path / "export" / name).read_bytes()))
        assert image.format == "JPEG"
        assert image.mode == "RGB"
        assert max(image.size) <= 1600
        width, height = image.size
        for corner in [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)]:
            assert min(image.getpixel(corner)) >= 245, (name, corner)  # white
        # Trimmed: the product comes close to the border (4% margin, soft edges), no wide frame.
        box = Image.eval(image.convert("L"), lambda v: 255 if v < 235 else 0).getbbox()
        assert box is not None
        assert box[0] <= width * 0.12
        assert box[1] <= height * 0.12
