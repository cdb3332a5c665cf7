"""Background removal: the matting algorithm behind every emulated answer.

Needs Pillow and numpy (the ``emulator`` extra); the rest of the package imports this
module lazily so that ``import freepik_bg.testing`` works without them.

Every function here is synchronous and CPU-bound: the ASGI app calls them in a worker
thread so that one large image does not block other requests.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.floating[Any]]
    BoolArray = NDArray[np.bool_]

__all__ = [
    "MAX_OUTPUT_PIXELS",
    "MAX_PREVIEW_PIXELS",
    "ImageDecodeError",
    "MattedImage",
    "fit_within",
    "remove_background",
]

#: The service's full-resolution output is at most 25 megapixels.
MAX_OUTPUT_PIXELS = 25_000_000
#: The preview is at most 0.25 megapixels.
MAX_PREVIEW_PIXELS = 250_000
# The mask is computed on a copy of about this many pixels and then upscaled: a
# 12-megapixel photo is handled in well under a second instead of tens of seconds.
_MASK_PIXELS = 160_000
# Pillow refuses images beyond this as possible decompression bombs; a source this large
# is rejected rather than processed.
_MAX_DECODE_PIXELS = 180_000_000


class ImageDecodeError(ValueError):
    """The source bytes have an image signature but do not decode."""


@attrs.frozen
class MattedImage:
    """The encoded result of one background removal: what the returned links serve."""

    high_png: bytes
    preview_png: bytes
    width: int
    height: int
    preview_width: int
    preview_height: int


def fit_within(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio and at most ``max_pixels`` pixels."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    w = max(1, math.floor(width * scale))
    h = max(1, math.floor(height * scale))
    while w * h > max_pixels:  # floating point can leave us one row over
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def remove_background(data: bytes, *, compress_level: int = 1) -> MattedImage:
    """Remove the background of a JPEG or PNG and encode the high-res and preview PNGs.

    Raises ImageDecodeError when the bytes do not decode.
    """
    img = _decode(data)
    alpha_src = img.getchannel("A") if img.mode in ("RGBA", "LA", "PA") else None
    rgb = img.convert("RGB")
    size = fit_within(rgb.width, rgb.height, MAX_OUTPUT_PIXELS)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        if alpha_src is not None:
            alpha_src = alpha_src.resize(size, Image.Resampling.BILINEAR)

    rgb, alpha = compute_matte(rgb)
    if alpha_src is not None:
        # A source that is already partly transparent stays at least that transparent.
        alpha = ImageChops.multiply(alpha, alpha_src)

    rgba = rgb  # ours: compute_matte returned a new image
    rgba.putalpha(alpha)
    # Zeroing fully transparent pixels makes the PNG smaller and faster to encode,
    # as real cutouts are.
    visible = alpha.point(lambda v: 255 if v else 0)
    rgba = Image.composite(rgba, Image.new("RGBA", rgba.size, (0, 0, 0, 0)), visible)

    high = io.BytesIO()
    rgba.save(high, "PNG", compress_level=compress_level)
    preview_size = fit_within(rgba.width, rgba.height, MAX_PREVIEW_PIXELS)
    small = rgba if preview_size == rgba.size else rgba.resize(preview_size, Image.Resampling.BOX)
    preview = io.BytesIO()
    small.save(preview, "PNG", compress_level=6)
    return MattedImage(
        high_png=high.getvalue(),
        preview_png=preview.getvalue(),
        width=rgba.width,
        height=rgba.height,
        preview_width=small.width,
        preview_height=small.height,
    )


def _decode(data: bytes) -> Image.Image:
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > _MAX_DECODE_PIXELS:
            raise ImageDecodeError(f"the image is too large to decode ({w}x{h} pixels)")
        img.load()
        # Cameras store rotation in EXIF; the service returns the image upright.
        img = ImageOps.exif_transpose(img)
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageDecodeError("the image could not be decoded") from exc
    return img


def compute_matte(rgb: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The cutout of an RGB image: (colours with edges decontaminated, alpha as "L").

    1. Work on a copy of about 0.16 megapixels.
    2. Fit a smooth colour model of the background (a low-order polynomial in x and y
       per channel) to the border pixels, robustly: object pixels touching the border
       are discarded as outliers. A polynomial follows plain, linear and vignette
       backgrounds alike.
    3. Pixels close to the model and connected to the border are background (a flood
       fill done by row and column run propagation, so it costs a few numpy passes).
    4. Refit the model on every background pixel found, with a higher degree, and fill
       again: this follows gradients into the middle of the picture. Regions enclosed
       by the object (a mug handle's hole) that match the model closely and are at least
       7x7 small pixels wide are background too.
    5. Upscale the mask; in the band around the edge, recompute alpha at full
       resolution by projecting each pixel's colour between the local background
       (the model) and the local object colour, and remove the background's tint from
       the edge pixels. The result is a soft, anti-aliased edge without a halo.
    """
    width, height = rgb.size
    factor = max(1, math.ceil(math.sqrt(width * height / _MASK_PIXELS)))
    small = rgb.reduce(factor) if factor > 1 else rgb
    arr = np.asarray(small, dtype=np.float32)
    sh, sw = arr.shape[:2]
    xs = (np.arange(sw, dtype=np.float32) + 0.5) / sw * 2.0 - 1.0
    ys = (np.arange(sh, dtype=np.float32) + 0.5) / sh * 2.0 - 1.0
    gx, gy = np.meshgrid(xs, ys)

    thickness = max(1, round(0.015 * min(sh, sw)))
    border = np.zeros((sh, sw), dtype=bool)
    border[:thickness, :] = True
    border[-thickness:, :] = True
    border[:, :thickness] = True
    border[:, -thickness:] = True

    degree = 2
    coef, noise = _fit_background(arr[border], gx[border], gy[border], degree=degree)
    threshold = float(np.clip(4.0 * noise + 8.0, 10.0, 48.0))
    allowed = _distance(arr, _evaluate(coef, gx, gy, degree)) < threshold
    background = _fill(border & allowed, allowed)

    if background.sum() > 50:
        # The border alone cannot see a vignette's centre: refit on all background found.
        pick = np.flatnonzero(background.ravel())
        if pick.size > 40_000:
            pick = pick[:: pick.size // 40_000 + 1]
        degree = 4
        coef, noise2 = _fit_background(
            arr.reshape(-1, 3)[pick], gx.ravel()[pick], gy.ravel()[pick], degree=degree
        )
        threshold = float(np.clip(4.0 * min(noise, noise2) + 8.0, 10.0, 48.0))
        dist = _distance(arr, _evaluate(coef, gx, gy, degree))
        allowed = dist < threshold
        background = _fill(border & allowed, allowed)
        # Holes enclosed by the object (a mug's handle) are background too when they match
        # the model closely and are big enough not to be a highlight or a label's speck.
        enclosed = (dist < 0.6 * threshold) & ~background
        background |= _fill(_erode(enclosed, 3), enclosed)

    # Blurring the hard mask by one small pixel widens the upscaled ramp so that the true
    # edge always lies inside the band refined below.
    hard = Image.fromarray(np.where(background, np.uint8(0), np.uint8(255)), "L")
    soft = hard.filter(ImageFilter.BoxBlur(1))
    mask = soft.resize((width, height), Image.Resampling.BILINEAR) if factor > 1 else soft
    alpha = np.array(mask, dtype=np.uint8)
    rows, cols = np.nonzero((alpha > 0) & (alpha < 255))
    if not rows.size:
        return rgb, Image.fromarray(alpha, "L")

    object_colour = _local_object_colour(arr, ~background)
    full = np.array(rgb)
    colours = full[rows, cols].astype(np.float32)
    px = (cols.astype(np.float32) + 0.5) / width * 2.0 - 1.0
    py = (rows.astype(np.float32) + 0.5) / height * 2.0 - 1.0
    back = _evaluate(coef, px, py, degree)
    fore = object_colour[np.minimum(rows // factor, sh - 1), np.minimum(cols // factor, sw - 1)]
    a = _edge_alpha(colours, back, fore, threshold)
    alpha[rows, cols] = np.round(a * 255.0).astype(np.uint8)
    # Un-mix the background: an edge pixel is a * object + (1 - a) * background.
    safe = np.maximum(a, 0.2)[:, None]
    clean = np.clip(back + (colours - back) / safe, 0.0, 255.0)
    full[rows, cols] = np.round(clean).astype(np.uint8)
    return Image.fromarray(full, "RGB"), Image.fromarray(alpha, "L")


def _local_object_colour(arr: FloatArray, foreground: BoolArray) -> FloatArray:
    """For each small pixel, the mean colour of nearby object pixels (NaN if none)."""
    # Pixels on the object's rim are already mixed with background: leave them out.
    core = foreground.copy()
    core[1:, :] &= foreground[:-1, :]
    core[:-1, :] &= foreground[1:, :]
    core[:, 1:] &= foreground[:, :-1]
    core[:, :-1] &= foreground[:, 1:]
    weight = core.astype(np.float32)
    total = _box_sum(arr * weight[..., None], 3)
    count = _box_sum(weight[..., None], 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / count, dtype=np.float32)


def _box_sum(values: FloatArray, radius: int) -> FloatArray:
    """Sum over a (2 * radius + 1) square window, with zero padding; values is (h, w, c)."""
    out = values
    for axis in (0, 1):
        padded = np.pad(out, [(radius + 1, radius) if i == axis else (0, 0) for i in range(3)])
        csum = np.cumsum(padded, axis=axis, dtype=np.float32)
        n = out.shape[axis]
        hi = np.take(csum, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lo = np.take(csum, np.arange(0, n), axis=axis)
        out = hi - lo
    return np.asarray(out, dtype=np.float32)


def _edge_alpha(
    colours: FloatArray, back: FloatArray, fore: FloatArray, threshold: float
) -> FloatArray:
    """Alpha of edge pixels: where each colour lies between background and object."""
    span = fore - back
    span_sq = np.sum(span * span, axis=1)
    along = np.sum((colours - back) * span, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        projected = along / span_sq
    # Snap the ends: noise and shading wobble a pure pixel by a few per cent.
    a = np.clip((projected - 0.1) / 0.8, 0.0, 1.0)
    # Without a clear object colour nearby (none found, or one too close to the
    # background), fall back to a ramp on the distance from the background.
    ramp = np.clip((_distance(colours, back) - threshold) / threshold, 0.0, 1.0)
    unclear = ~np.isfinite(projected) | (span_sq < (1.5 * threshold) ** 2)
    return np.asarray(np.where(unclear, ramp, a), dtype=np.float32)


def _basis(x: FloatArray, y: FloatArray, degree: int) -> list[FloatArray]:
    terms: list[FloatArray] = []
    for total in range(degree + 1):
        for i in range(total + 1):
            terms.append(np.asarray(x**i * y ** (total - i), dtype=np.float32))
    return terms


def _evaluate(coef: FloatArray, x: FloatArray, y: FloatArray, degree: int) -> FloatArray:
    terms = _basis(x, y, degree)
    out = np.zeros((*np.broadcast_shapes(x.shape, y.shape), 3), dtype=np.float32)
    for k, term in enumerate(terms):
        out += term[..., None] * coef[k]
    return out


def _distance(a: FloatArray, b: FloatArray) -> FloatArray:
    diff = a - b
    return np.asarray(np.sqrt(np.sum(diff * diff, axis=-1)), dtype=np.float32)


def _fit_background(
    colours: FloatArray, x: FloatArray, y: FloatArray, *, degree: int, rounds: int = 3
) -> tuple[FloatArray, float]:
    """Least-squares polynomial fit with outlier rejection; returns (coef, noise sigma)."""
    design = np.stack(_basis(x, y, degree), axis=1).astype(np.float64)
    target = colours.astype(np.float64)
    keep = np.ones(len(target), dtype=bool)
    coef: FloatArray = np.zeros((design.shape[1], 3))
    residual: FloatArray = np.zeros(len(target))
    for _ in range(rounds):
        if keep.sum() < design.shape[1] * 2:
            break
        coef = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
        residual = np.sqrt(np.sum((design @ coef - target) ** 2, axis=1))
        median = float(np.median(residual[keep]))
        keep = residual < max(3.0 * median, 4.0)
    kept = residual[keep] if keep.any() else residual
    noise = 1.4826 * float(np.median(kept)) if kept.size else 0.0
    return coef.astype(np.float32), noise


def _erode(mask: BoolArray, radius: int) -> BoolArray:
    """Pixels whose (2 * radius + 1) square neighbourhood lies entirely inside mask."""
    out: BoolArray = mask.copy()
    for _ in range(radius):
        step: BoolArray = out.copy()
        step[1:, :] &= out[:-1, :]
        step[:-1, :] &= out[1:, :]
        step[:, 1:] &= out[:, :-1]
        step[:, :-1] &= out[:, 1:]
        out = step
    return out


def _fill(seed: BoolArray, allowed: BoolArray) -> BoolArray:
    """Pixels of ``allowed`` 4-connected to ``seed``.

    Alternates horizontal and vertical run propagation: any run of allowed pixels that
    touches a reached pixel is reached entirely. It converges in as many passes as the
    fill's paths have turns, instead of one pass per pixel of path length.
    """
    reached = seed & allowed
    count = int(reached.sum())
    while True:
        reached = _fill_runs(reached, allowed)
        columns = _fill_runs(np.transpose(reached), np.transpose(allowed))
        reached = np.asarray(np.transpose(columns), dtype=np.bool_)
        new_count = int(reached.sum())
        if new_count == count:
            return reached
        count = new_count


def _fill_runs(reached: BoolArray, allowed: BoolArray) -> BoolArray:
    h, w = allowed.shape
    # A False column between rows keeps runs from wrapping onto the next row.
    a = np.zeros((h, w + 1), dtype=bool)
    a[:, :w] = allowed
    r = np.zeros((h, w + 1), dtype=bool)
    r[:, :w] = reached
    af, rf = a.ravel(), r.ravel()
    starts = af.copy()
    starts[1:] &= ~af[:-1]
    run_id = np.cumsum(starts)
    hit = np.zeros(int(run_id[-1]) + 1, dtype=bool)
    hit[run_id[rf]] = True
    out = af & hit[run_id]
    return np.ascontiguousarray(out.reshape(h, w + 1)[:, :w])
