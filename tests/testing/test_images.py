"""Sample generation and the cutout algorithm, checked pixel by pixel."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from freepik_bg.testing import (
    SampleKind,
    _matte,
    generate_sample,
    sample_info,
    sample_names,
    sniff_format,
)
from freepik_bg.testing._matte import fit_within, remove_background

OBJECTS = [
    n
    for n in sample_names()
    if sample_info(n).kind is SampleKind.OBJECT and sample_info(n).megapixels < 5
]


def _alpha(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGBA"
    return np.asarray(image.getchannel("A"))


def _border_ring(alpha: np.ndarray, width: int = 3) -> np.ndarray:
    return np.concatenate(
        [
            alpha[:width].ravel(),
            alpha[-width:].ravel(),
            alpha[:, :width].ravel(),
            alpha[:, -width:].ravel(),
        ]
    )


def test_object_samples_cover_backgrounds_formats_and_sizes() -> None:
    infos = [sample_info(n) for n in sample_names() if sample_info(n).kind is SampleKind.OBJECT]
    assert {i.background for i in infos} >= {"plain", "vertical", "diagonal", "radial"}
    assert {i.content_type for i in infos} == {"image/jpeg", "image/png"}
    assert max(i.megapixels for i in infos) >= 12
    assert len({(i.width, i.height) for i in infos}) >= 4


@pytest.mark.parametrize("name", OBJECTS)
def test_cutout_has_transparent_background_and_opaque_object(name: str) -> None:
    info = sample_info(name)
    source = generate_sample(name)
    assert sniff_format(source) == ("png" if name.endswith(".png") else "jpeg")
    cutout = remove_background(source)
    alpha = _alpha(cutout.high_png)
    assert alpha.shape == (info.height, info.width)
    assert (_border_ring(alpha) == 0).all()
    assert info.object_point is not None
    x, y = info.object_point
    assert (alpha[y - 5 : y + 6, x - 5 : x + 6] == 255).all()
    # A soft edge: some pixels are partly transparent, and only a thin band of them.
    partial = np.count_nonzero((alpha > 0) & (alpha < 255))
    assert 0 < partial < 0.02 * alpha.size


@pytest.mark.parametrize("name", [n for n in OBJECTS if n.startswith("ball")])
def test_ball_cutout_matches_the_drawn_disc(name: str) -> None:
    info = sample_info(name)
    assert info.width is not None
    assert info.height is not None
    alpha = _alpha(remove_background(generate_sample(name)).high_png)
    radius = 0.3 * min(info.width, info.height)
    expected = math.pi * radius**2
    assert np.count_nonzero(alpha > 127) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("name", ["mug-plain.jpg", "mug-plain.png", "mug-diagonal-2mp.jpg"])
def test_hole_inside_the_mug_handle_is_removed(name: str) -> None:
    info = sample_info(name)
    assert info.width is not None
    assert info.height is not None
    s = min(info.width, info.height)
    body_right = info.width / 2 - 0.06 * s + 0.18 * s
    hole = (int(body_right + 0.035 * s), info.height // 2)
    alpha = _alpha(remove_background(generate_sample(name)).high_png)
    assert alpha[hole[1], hole[0]] == 0
    # ...while the handle itself stays.
    handle = (int(body_right + 0.095 * s), info.height // 2)
    assert alpha[handle[1], handle[0]] == 255


@pytest.mark.parametrize("name", ["ball-radial.jpg", "mug-plain.png", "bottle-gradient.jpg"])
def test_edges_are_decontaminated(name: str) -> None:
    # Dark objects on light backgrounds: semi-transparent edge pixels must carry the
    # object's colour, not the light background's (which shows as a halo).
    source = generate_sample(name)
    before = np.asarray(Image.open(io.BytesIO(source)).convert("RGB")).astype(int)
    after = np.asarray(Image.open(io.BytesIO(remove_background(source).high_png))).astype(int)
    edge = (after[..., 3] > 30) & (after[..., 3] < 225)
    assert edge.any()
    brightness_before = before[edge].sum(axis=1).mean()
    brightness_after = after[..., :3][edge].sum(axis=1).mean()
    assert brightness_after < brightness_before - 150


def test_twelve_megapixel_cutout() -> None:
    # How long it takes is a benchmark's business, not a unit test's.
    source = generate_sample("bottle-diagonal-12mp.jpg")
    cutout = remove_background(source)
    assert (cutout.width, cutout.height) == (4000, 3000)
    assert cutout.preview_width * cutout.preview_height <= 250_000
    alpha = _alpha(cutout.high_png)
    assert (_border_ring(alpha) == 0).all()
    assert alpha[1800, 2000] == 255


def test_output_is_capped_at_the_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_matte, "MAX_OUTPUT_PIXELS", 10_000)
    cutout = remove_background(generate_sample("ball-small.png"))
    assert cutout.width * cutout.height <= 10_000
    assert cutout.width / cutout.height == pytest.approx(160 / 120, rel=0.02)


@pytest.mark.parametrize(
    ("size", "limit"),
    [((8000, 5000), 25_000_000), ((4000, 3000), 250_000), ((1, 10_000_000), 250_000), ((3, 3), 9)],
)
def test_fit_within(size: tuple[int, int], limit: int) -> None:
    width, height = fit_within(*size, limit)
    assert width * height <= limit
    assert width >= 1
    assert height >= 1
    if size[0] * size[1] <= limit:
        assert (width, height) == size
    else:
        assert width * height > 0.97 * limit or min(width, height) == 1


def test_sources_of_other_modes() -> None:
    buffer = io.BytesIO()
    grey = Image.new("L", (120, 90), 230)
    grey.paste(40, (40, 30, 80, 60))
    grey.save(buffer, "PNG")
    alpha = _alpha(remove_background(buffer.getvalue()).high_png)
    assert alpha[0, 0] == 0
    assert alpha[45, 60] == 255

    # An already transparent source stays transparent where it was.
    rgba = Image.new("RGBA", (120, 90), (240, 240, 240, 255))
    rgba.paste((200, 30, 30, 255), (40, 30, 80, 60))
    rgba.paste((200, 30, 30, 0), (40, 30, 50, 60))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    alpha = _alpha(remove_background(buffer.getvalue()).high_png)
    assert alpha[45, 45] == 0
    assert alpha[45, 70] == 255


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100), (240, 240, 240))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    cutout = remove_background(buffer.getvalue())
    assert (cutout.width, cutout.height) == (100, 200)


def test_corrupt_and_huge_declared_images_are_refused() -> None:
    with pytest.raises(_matte.ImageDecodeError):
        remove_background(generate_sample("corrupt.jpg"))
    png = generate_sample("too-large.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 20 * 1024 * 1024
    assert Image.open(io.BytesIO(png)).size == (64, 64)  # a real, decodable PNG


def test_samples_are_deterministic() -> None:
    assert generate_sample("mug-plain.png") == generate_sample("mug-plain.png")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xff\xd8\xff\xe0rest", "jpeg"),
        (b"\x89PNG\r\n\x1a\nrest", "png"),
        (b"GIF89a...", "gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"  <!DOCTYPE html><html>", "html"),
        (b"BM....", "bmp"),
        (b"\x00\x00\x00\x1cftypavif", "heif/avif"),
        (b"<svg xmlns='...'>", "svg/xml"),
        (b"", "unknown"),
    ],
)
def test_sniff_format(data: bytes, expected: str) -> None:
    assert sniff_format(data) == expected
