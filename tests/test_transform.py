"""freepik_bg.transform, one option at a time: pixels checked, not only sizes and names."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from PIL import Image, ImageCms, ImageColor

from freepik_bg import BatchConfig, ConfigurationError, TransformError, TransformOptions, transform
from freepik_bg._colors import CSS_COLORS, parse_color

from .images import P3_PRIMARIES, RED, SRGB_PRIMARIES, cutout, matrix_profile, opened

SUBJECT = cutout()  # 200x100, a red 100x60 rectangle at (50, 20)


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 4) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_the_defaults_return_the_bytes_untouched() -> None:
    assert transform(SUBJECT) == SUBJECT
    # Quality is for lossy formats: a PNG at another quality is still untouched.
    assert transform(SUBJECT, quality=50) == SUBJECT
    assert transform(b"not even an image") == b"not even an image"


def test_jpeg_is_flattened_on_white_with_the_subject_in_the_middle() -> None:
    out = transform(SUBJECT, output_format="jpeg")
    assert out.startswith(b"\xff\xd8\xff")
    image = opened(out)
    assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (200, 100))
    for corner in ((0, 0), (199, 0), (0, 99), (199, 99)):
        assert close(image.getpixel(corner), (255, 255, 255)), corner  # type: ignore[arg-type]
    assert close(image.getpixel((100, 50)), RED, 6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("background", "rgb"),
    [("black", (0, 0, 0)), ("#1e90ff", (30, 144, 255)), ("WhiteSmoke", (245, 245, 245))],
)
def test_background_colours_by_name_and_hex(background: str, rgb: tuple[int, int, int]) -> None:
    image = opened(transform(SUBJECT, output_format="jpeg", background=background))
    assert close(image.getpixel((2, 2)), rgb)  # type: ignore[arg-type]
    assert close(image.getpixel((100, 50)), RED, 6)  # type: ignore[arg-type]


def test_a_png_with_a_background_is_flattened_exactly() -> None:
    image = opened(transform(SUBJECT, background="#00ff00"))
    assert (image.format, image.mode) == ("PNG", "RGB")
    assert image.getpixel((0, 0)) == (0, 255, 0)
    assert image.getpixel((100, 50)) == RED


def test_half_transparent_edges_blend_into_the_background() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 255, 128))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    flat = opened(transform(buffer.getvalue(), background="white"))
    assert close(flat.getpixel((1, 1)), (127, 127, 255), 2)  # type: ignore[arg-type]


def test_webp_keeps_alpha_unless_a_background_is_given() -> None:
    image = opened(transform(SUBJECT, output_format="webp"))
    assert (image.format, image.mode) == ("WEBP", "RGBA")
    assert image.getpixel((2, 2))[3] == 0  # type: ignore[index]
    assert image.getpixel((100, 50))[3] == 255  # type: ignore[index]
    assert close(image.getpixel((100, 50))[:3], RED, 8)  # type: ignore[index]
    flat = opened(transform(SUBJECT, output_format="webp", background="white"))
    assert flat.mode == "RGB"


def test_quality_changes_the_encoding() -> None:
    noisy = Image.effect_noise((256, 256), 64).convert("RGBA")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    small = transform(buffer.getvalue(), output_format="jpeg", quality=20)
    large = transform(buffer.getvalue(), output_format="jpeg", quality=95)
    assert len(small) < len(large) / 2


def test_trim_crops_to_the_subject() -> None:
    image = opened(transform(SUBJECT, trim=True))
    assert image.size == (100, 60)
    assert image.getchannel("A").getbbox() == (0, 0, 100, 60)


@pytest.mark.parametrize(("margin", "pad"), [(10, 10), ("10", 10), ("10%", 10), ("2.5%", 2)])
def test_margin_pads_the_trimmed_subject(margin: int | str, pad: int) -> None:
    image = opened(transform(SUBJECT, trim=True, margin=margin))
    assert image.size == (100 + 2 * pad, 60 + 2 * pad)
    # The subject's alpha box touches the margin on every side.
    assert image.getchannel("A").getbbox() == (pad, pad, 100 + pad, 60 + pad)


def test_a_margin_on_jpeg_is_background() -> None:
    image = opened(transform(SUBJECT, output_format="jpeg", trim=True, margin=8))
    assert image.size == (116, 76)
    # JPEG's 8x8 blocks ring a little near the subject's hard edge.
    assert close(image.getpixel((0, 0)), (255, 255, 255), 8)  # type: ignore[arg-type]
    assert close(image.getpixel((58, 38)), RED, 6)  # type: ignore[arg-type]


def test_max_side_downscales_and_never_upscales() -> None:
    assert opened(transform(SUBJECT, max_side=50)).size == (50, 25)
    assert opened(transform(SUBJECT, max_side=1000)).size == (200, 100)
    # Lanczos over a hard edge: the middle of the subject keeps its colour.
    small = opened(transform(SUBJECT, max_side=100))
    assert small.getpixel((50, 25)) == (*RED, 255)


@pytest.mark.parametrize(("margin", "pad"), [(5, 5), ("10%", 4)])
def test_max_side_counts_the_margin_and_keeps_it_touching(margin: int | str, pad: int) -> None:
    image = opened(transform(SUBJECT, trim=True, margin=margin, max_side=50))
    assert max(image.size) == 50
    box = image.getchannel("A").getbbox()
    assert box is not None
    assert (box[0], box[1]) == (pad, pad)
    assert (image.width - box[2], image.height - box[3]) == (pad, pad)


def test_an_empty_subject_is_a_clear_transform_error_not_a_0x0_image() -> None:
    empty = cutout(box=(0, 0, 0, 0))
    with pytest.raises(TransformError, match="fully transparent"):
        transform(empty, trim=True)
    # Without trim, an empty cutout is still a valid image.
    assert opened(transform(empty, output_format="jpeg")).size == (200, 100)


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_bytes_that_do_not_decode_are_a_transform_error(data: bytes) -> None:
    with pytest.raises(TransformError, match="cannot transform the cutout"):
        transform(data, output_format="jpeg")


def test_webp_over_its_size_limit_says_what_to_do() -> None:
    wide = cutout(size=(16384, 2), box=(0, 0, 10, 2))
    with pytest.raises(TransformError, match="--max-side 16383"):
        transform(wide, output_format="webp")
    assert opened(transform(wide, output_format="webp", max_side=16383)).width == 16383


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"output_format": "gif"}, "expected png, webp or jpeg, got 'gif'"),
        ({"background": "notacolor"}, "not a colour: 'notacolor'"),
        ({"background": "#12345"}, "not a colour"),
        ({"trim": True, "margin": -5}, "margin must be 0 or more"),
        ({"trim": True, "margin": "-5%"}, "margin must be 0 or more"),
        ({"trim": True, "margin": "five"}, "margin must be 0 or more"),
        ({"max_side": 0}, "max_side"),
        ({"quality": 0}, "quality must be a whole number from 1 to 100"),
        ({"quality": 101}, "quality"),
        ({"margin": 10}, "add trim"),
        ({"trim": True, "margin": 25, "max_side": 50}, "leaves no room"),
    ],
)
def test_bad_options_are_clear_value_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        transform(SUBJECT, **options)  # type: ignore[arg-type]


def test_format_names_are_forgiving_and_extensions_follow() -> None:
    assert TransformOptions(output_format="JPG").suffix == ".jpg"  # type: ignore[arg-type]
    assert TransformOptions(output_format="webp").suffix == ".webp"
    assert opened(transform(SUBJECT, output_format="JPEG")).format == "JPEG"  # type: ignore[arg-type]


# -- colour and orientation ----------------------------------------------------------


def test_a_non_srgb_profile_is_converted_then_dropped() -> None:
    # A profile that swaps red and blue: converted, the red subject turns blue.
    red, green, blue = SRGB_PRIMARIES
    swapped = matrix_profile("Swapped primaries", (blue, green, red))
    image = opened(transform(cutout(icc=swapped), output_format="webp"))
    r, _, b, a = image.getpixel((100, 50))  # type: ignore[misc]
    assert (b > 150, r < 60, a) == (True, True, 255)
    assert image.getpixel((2, 2))[3] == 0  # type: ignore[index]
    assert "icc_profile" not in image.info


def test_display_p3_pixels_come_out_as_srgb() -> None:
    p3 = matrix_profile("Display P3-like", P3_PRIMARIES)
    expected = ImageCms.profileToProfile(
        Image.new("RGB", (1, 1), RED),
        ImageCms.ImageCmsProfile(io.BytesIO(p3)),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    )
    assert expected is not None
    want = expected.getpixel((0, 0))
    assert not close(want, RED, 4)  # a conversion that changes nothing would pass otherwise
    image = opened(transform(cutout(icc=p3), background="white"))
    assert close(image.getpixel((100, 50)), want, 1)  # type: ignore[arg-type]
    assert "icc_profile" not in image.info


def test_an_srgb_profile_is_dropped_and_the_pixels_kept() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = opened(transform(cutout(icc=srgb), trim=True))
    assert image.getpixel((50, 30)) == (*RED, 255)
    assert "icc_profile" not in image.info


def test_a_broken_profile_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="freepik_bg"):
        image = opened(transform(cutout(icc=b"not a profile" * 20), trim=True))
    assert image.getpixel((50, 30)) == (*RED, 255)
    assert "ICC profile" in caplog.text


def test_exif_orientation_is_applied_once_and_removed() -> None:
    # Orientation 6: the stored pixels are to be shown rotated 90 degrees clockwise.
    tagged = cutout(orientation=6)
    once = transform(tagged, trim=True)
    image = opened(once)
    assert image.size == (60, 100)
    assert image.getexif().get(0x0112) is None
    # Transforming the output again does not rotate it again.
    assert opened(transform(once, output_format="jpeg")).size == (60, 100)


# -- colours, and running without Pillow -------------------------------------------------


def test_the_colour_table_is_css_and_pillows() -> None:
    assert {name: ImageColor.getrgb(name) for name in ImageColor.colormap} == CSS_COLORS
    assert parse_color(" #ABC ") == (170, 187, 204)
    for bad in ("", "#", "#12", "#ggg", "transparent", "rgb(1,2,3)", "white!"):
        with pytest.raises(ValueError, match="CSS colour name"):
            parse_color(bad)


def test_without_pillow_a_transform_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PIL", "PIL.Image", "PIL.ImageCms", "PIL.ImageOps"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigurationError, match=r"pip install 'freepik-bg\[image\]'"):
        transform(SUBJECT, output_format="jpeg")
    assert transform(SUBJECT) == SUBJECT  # nothing to do needs no Pillow


def test_the_package_imports_without_pillow() -> None:
    code = (
        "import sys\n"
        "sys.modules['PIL'] = None\n"
        "import freepik_bg\n"
        "freepik_bg.BatchConfig(output_format='jpeg', trim=True, margin='5%')\n"
        "print(freepik_bg.transform(b'x'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "b'x'"


def test_the_docstring_examples_hold() -> None:
    import doctest

    from freepik_bg import _colors, _transform_options

    runner = doctest.DocTestRunner()
    # TransformOptions shows its public path (freepik_bg), so testmod would pass it by.
    for target in (_colors, _transform_options, TransformOptions):
        module = _transform_options if target is TransformOptions else target
        for test in doctest.DocTestFinder().find(target, globs=vars(module)):
            runner.run(test)
    assert runner.summarize(verbose=False) == (0, 8)  # none failed, all 8 ran


def test_the_demo_contact_sheet_has_a_jpeg_on_white_trimmed_column(tmp_path: Path) -> None:
    from freepik_bg._demo import _THUMB, contact_sheet

    path = tmp_path / "cutout.png"
    path.write_bytes(SUBJECT)
    with Image.open(contact_sheet([("x.png", SUBJECT, path)], tmp_path / "s.png")) as sheet:
        image = sheet.convert("RGB")
    cell = _THUMB + 20
    assert image.width == 3 * cell
    # The third cell: the 100x60 subject with a 5% (5 px) margin, 110x70, on white.
    left = 2 * cell + 10 + (_THUMB - 110) // 2
    assert close(image.getpixel((left + 55, 10 + 35)), RED, 6)  # type: ignore[arg-type]
    assert close(image.getpixel((left + 2, 10 + 2)), (255, 255, 255), 8)  # type: ignore[arg-type]
    # The cutout's own cell shows a checkerboard there, not white.
    board = cell + 10 + (_THUMB - 200) // 2
    assert image.getpixel((board + 14, 12)) != image.getpixel((board + 2, 12))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_format": "gif"}, "output_format must be png, webp or jpeg"),
        ({"background": "notacolor"}, "not a colour"),
        ({"trim": True, "margin": -5}, "margin must be 0 or more"),
        ({"max_side": 0}, "max_side"),
        ({"quality": 101}, "quality"),
        ({"margin": 5}, "add trim"),
        ({"trim": True, "margin": 30, "max_side": 60}, "leaves no room"),
        ({"keep_png": True}, "keep_png"),
        ({"keep_png": True, "quality": 50}, "keep_png"),  # quality alone transforms nothing
    ],
)
def test_batch_config_checks_the_transform_options(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BatchConfig(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        BatchConfig().evolve(**changes)


def test_batch_config_groups_its_transform_options() -> None:
    config = BatchConfig(output_format="jpeg", trim=True, margin="5%", keep_png=True)
    assert config.transform_options == TransformOptions(
        output_format="jpeg", trim=True, margin="5%"
    )
    assert BatchConfig().transform_options.identity


# One non-default value per field; a field added to TransformOptions must be added here.
_CHANGES: dict[str, object] = {
    "output_format": "webp",
    "quality": 50,
    "background": "white",
    "trim": True,
    "margin": "5%",
    "max_side": 512,
}


@pytest.mark.parametrize("field", [f.name for f in attrs.fields(TransformOptions)])
def test_identity_means_every_field_but_quality_is_its_default(field: str) -> None:
    changes = {field: _CHANGES[field]}
    if field == "margin":
        changes["trim"] = True  # a margin needs trim; trim alone is already a transform
        assert TransformOptions(trim=True, margin=0).identity is False
    # Quality only matters to a lossy encoding: a PNG at any quality is untouched.
    assert TransformOptions(**changes).identity is (field == "quality")  # type: ignore[arg-type]
    assert TransformOptions().identity
