"""Image transforms with Pillow: sRGB and orientation, trim and margin, max side, flatten, encode.

Pillow is optional (``freepik-bg[image]``): it is imported when a transform
runs, so ``import freepik_bg`` works without it. Everything here is CPU work
on whole images; the batch runs it in a worker thread (see `_output_stage`).
"""

from __future__ import annotations

import io
import logging
from typing import IO, TYPE_CHECKING

from ._errors import ConfigurationError, TransformError
from ._transform_options import DEFAULT_QUALITY, OutputFormat, TransformOptions

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["PILLOW_HINT", "apply", "require_pillow", "transform"]

logger = logging.getLogger("freepik_bg")

PILLOW_HINT = "image transforms need Pillow: pip install 'freepik-bg[image]'"
_ORIENTATION = 0x0112
_WEBP_MAX_SIDE = 16383


def require_pillow() -> None:
    """Raise `ConfigurationError` naming the ``image`` extra when Pillow is missing."""
    try:
        import PIL.Image
        import PIL.ImageCms
        import PIL.ImageOps  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(f"{PILLOW_HINT} ({exc})") from None


def transform(
    data: bytes,
    *,
    output_format: OutputFormat = "png",
    quality: int = DEFAULT_QUALITY,
    background: str | None = None,
    trim: bool = False,
    margin: int | str = 0,
    max_side: int | None = None,
) -> bytes:
    """Transform a cutout's bytes as a batch would before storing it; bytes in, bytes out.

    The options are those of `BatchConfig` (see `TransformOptions`). With the
    defaults the bytes come back untouched. Otherwise the image is converted
    to sRGB (an embedded ICC profile is applied, then dropped), its EXIF
    orientation is applied once and removed, then it is trimmed, padded,
    downscaled, flattened and encoded, in that order. Needs Pillow
    (``pip install 'freepik-bg[image]'``).

    Raises:
        ValueError: an option is invalid (before any work).
        TransformError: the image cannot be transformed (not an image, a
            fully transparent cutout with ``trim``, too large for WebP).
        ConfigurationError: Pillow is not installed.

    Examples:
        ```python
        async def main(client: AsyncClient, cutout: Cutout) -> None:
            png = await client.download(cutout)
            jpeg = transform(png, output_format="jpeg", trim=True, margin="5%")
            assert jpeg.startswith(b"\\xff\\xd8\\xff")
        ```
    """
    options = TransformOptions(
        output_format=output_format,
        quality=quality,
        background=background,
        trim=trim,
        margin=margin,
        max_side=max_side,
    )
    return apply(data, options)


def apply(source: bytes | IO[bytes], options: TransformOptions) -> bytes:
    """`transform` with its options as one object; ``source`` may be a binary file."""
    if options.identity:
        return source if isinstance(source, bytes) else source.read()
    require_pillow()
    try:
        return _run(io.BytesIO(source) if isinstance(source, bytes) else source, options)
    except TransformError:
        raise
    except Exception as exc:
        # Pillow raises many kinds (OSError, ValueError, SyntaxError, DecompressionBombError):
        # each is this item's failure, never a crash of the batch.
        raise TransformError(f"cannot transform the cutout: {type(exc).__name__}: {exc}") from exc


def _run(source: IO[bytes], options: TransformOptions) -> bytes:
    from PIL import Image

    with Image.open(source) as opened:
        image = _srgb_rgba(opened)
    if options.trim:
        image = _trim(image, options)
    elif options.max_side is not None:
        image = _fit(image, options.max_side)
    color = options.flatten_color
    if color is not None:
        flat = Image.new("RGB", image.size, color)
        flat.paste(image, (0, 0), image)
        return _encode(flat, options)
    return _encode(image, options)


def _srgb_rgba(image: Image.Image) -> Image.Image:
    """RGBA in sRGB, upright: the ICC profile applied and the EXIF orientation applied once."""
    from PIL import ImageOps

    if image.getexif().get(_ORIENTATION, 1) != 1:
        # Rotates the pixels and removes the tag, so that no viewer rotates them again.
        transposed = ImageOps.exif_transpose(image)
        assert transposed is not None
        image = transposed
    icc = image.info.get("icc_profile")
    converted = _to_srgb(image, icc) if icc else None
    result = converted if converted is not None else image.convert("RGBA")
    # Nothing of the source's metadata goes on: its profile was applied, its orientation too.
    result.info = {}
    return result


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """The image converted from its ICC profile to sRGB, as RGBA; ``None`` if already sRGB."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None
        source = image if image.mode in ("RGB", "RGBA", "L", "CMYK") else image.convert("RGBA")
        # The alpha channel is carried through the colour transform untouched.
        mode = "RGBA" if source.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(
            source,
            profile,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode=mode,
        )
    except (ImageCms.PyCMSError, OSError) as exc:
        # As browsers do with a broken profile: show the pixels as they are.
        logger.warning("ignoring an unusable ICC profile in a cutout: %s", exc)
        return None
    assert converted is not None
    return converted if converted.mode == "RGBA" else converted.convert("RGBA")


def _trim(image: Image.Image, options: TransformOptions) -> Image.Image:
    """Crop to the subject, scale it to fit ``max_side`` with its margin, then pad."""
    from PIL import Image

    box = image.getchannel("A").getbbox()
    if box is None:
        raise TransformError(
            "nothing to trim: the cutout is fully transparent (no subject was found); "
            "store it without --trim, or check the source image"
        )
    subject = image.crop(box)
    longer = max(subject.size)
    margin = options.margin_pixels(longer)
    if options.max_side is not None and longer + 2 * margin > options.max_side:
        if isinstance(options.margin, str):  # a percentage scales with the subject
            margin *= options.max_side / (longer + 2 * margin)
        subject = _fit(subject, max(1, options.max_side - 2 * round(margin)))
    pad = round(margin)
    if not pad:
        return subject
    canvas = Image.new("RGBA", (subject.width + 2 * pad, subject.height + 2 * pad), (0, 0, 0, 0))
    canvas.paste(subject, (pad, pad))
    return canvas


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never up) so that the longer side is ``max_side``, with Lanczos."""
    from PIL import Image

    longer = max(image.size)
    if longer <= max_side:
        return image
    scale = max_side / longer
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # Pillow resizes RGBA with premultiplied alpha, so edges get no dark fringe;
    # reducing_gap first shrinks by whole factors, much faster at the same quality.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode(image: Image.Image, options: TransformOptions) -> bytes:
    out = io.BytesIO()
    if options.output_format == "jpeg":
        image.save(out, "JPEG", quality=options.quality)
    elif options.output_format == "webp":
        if max(image.size) > _WEBP_MAX_SIDE:
            raise TransformError(
                f"a WebP image is at most {_WEBP_MAX_SIDE} pixels a side; this one is "
                f"{image.width}x{image.height}: add --max-side {_WEBP_MAX_SIDE} (max_side=...) "
                "or choose another format"
            )
        image.save(out, "WEBP", quality=options.quality)
    else:
        image.save(out, "PNG")
    return out.getvalue()
