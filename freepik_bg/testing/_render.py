"""Drawing the generated sample images: product shots, and files the service rejects.

Needs Pillow and numpy (the ``emulator`` extra): `_samples` imports it lazily.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from freepik_bg.testing._samples import SampleKind, sample_info

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.floating[Any]]

__all__ = ["generate_sample", "render_object"]

# Pillow's TrueType-free drawing is not needed: shapes are signed distance fields, which
# give anti-aliased edges for free at any size.
_BACKGROUNDS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "plain": ((242, 240, 236), (242, 240, 236)),
    "vertical": ((196, 218, 246), (250, 250, 252)),
    "diagonal": ((238, 212, 198), (196, 214, 242)),
    "radial": ((252, 252, 250), (168, 178, 196)),
}
_COLOURS: dict[str, tuple[int, int, int]] = {
    "ball": (212, 52, 40),
    "mug": (28, 128, 150),
    "bottle": (40, 140, 72),
}


def generate_sample(name: str) -> bytes:
    """The bytes of sample ``name``, generated deterministically."""
    info = sample_info(name)
    if info.kind is SampleKind.OBJECT:
        assert info.width
        assert info.height
        assert info.shape
        assert info.background
        img = render_object(info.shape, info.background, info.width, info.height)
        buf = io.BytesIO()
        if name.endswith(".png"):
            img.save(buf, "PNG", compress_level=6)
        else:
            img.save(buf, "JPEG", quality=90)
        return buf.getvalue()
    if info.kind is SampleKind.GIF:
        frames = [Image.new("RGB", (64, 64), c) for c in ((200, 40, 40), (40, 40, 200))]
        buf = io.BytesIO()
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
        return buf.getvalue()
    if info.kind is SampleKind.OVERSIZE:
        return _oversize_png(22 * 1024 * 1024)
    if info.kind is SampleKind.HTML:
        return (
            b"<!doctype html>\n<html><head><title>Sign in</title></head>"
            b"<body><h1>Please sign in</h1><p>This page is not an image.</p></body></html>\n"
        )
    assert info.kind is SampleKind.CORRUPT
    return b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + bytes(range(256)) * 16


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _oversize_png(padding: int) -> bytes:
    """A valid 64x64 PNG made huge by a private ancillary chunk that decoders skip."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 160, 200)).save(buf, "PNG")
    small = buf.getvalue()
    iend = small.rindex(b"IEND") - 4
    # A lowercase first letter marks the chunk ancillary, so it is safe to ignore.
    return small[:iend] + _png_chunk(b"pdDg", bytes(padding)) + small[iend:]


def render_object(shape: str, background: str, width: int, height: int) -> Image.Image:
    """A product-style shot: a shaded ``shape`` centred on ``background``."""
    s = float(min(width, height))
    canvas = _background(background, width, height)
    cx, cy = width / 2.0, height / 2.0
    # Only the object's bounding box needs per-pixel shading: for the 12-megapixel sample
    # that is a sixth of the picture.
    half_w, half_h = {"ball": (0.3, 0.3), "mug": (0.3, 0.22), "bottle": (0.13, 0.42)}[shape]
    x0, x1 = max(0, int(cx - half_w * s) - 2), min(width, int(cx + half_w * s) + 3)
    y0, y1 = max(0, int(cy - half_h * s) - 2), min(height, int(cy + half_h * s) + 3)
    x = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    y = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5

    colour = np.array(_COLOURS[shape], dtype=np.float32)
    if shape == "ball":
        r = 0.3 * s
        dx, dy = (x - cx) / r, (y - cy) / r
        dist = np.sqrt(dx * dx + dy * dy)
        coverage = np.clip(0.5 - (dist - 1.0) * r, 0.0, 1.0)
        # Lambertian sphere lit from the upper left, plus a soft specular spot.
        nz = np.sqrt(np.clip(1.0 - dist * dist, 0.0, 1.0))
        light = np.clip(-0.45 * dx - 0.55 * dy + 0.70 * nz, 0.0, 1.0)
        shade = 0.35 + 0.65 * light
        spec = np.exp(-((dx + 0.35) ** 2 + (dy + 0.4) ** 2) / 0.02) * 0.5
        body = colour * shade[..., None] + (255.0 - colour) * spec[..., None]
    elif shape == "mug":
        bcx = cx - 0.06 * s
        bw, bh = 0.18 * s, 0.22 * s
        body_sd = _rounded_rect_sd(x - bcx, y - cy, bw, bh, 0.03 * s)
        hx, hy = x - (bcx + bw), y - cy
        ring = np.abs(np.sqrt(hx * hx + hy * hy) - 0.095 * s) - 0.025 * s
        handle_sd = np.maximum(ring, -hx)  # only the half outside the body
        sd = np.minimum(body_sd, handle_sd)
        coverage = np.clip(0.5 - sd, 0.0, 1.0)
        u = np.clip((x - bcx) / bw, -1.0, 1.0)
        shade = 0.45 + 0.55 * np.sqrt(np.clip(1.0 - (u + 0.3) ** 2 / 1.7, 0.0, 1.0))
        body = colour * np.broadcast_to(shade, coverage.shape)[..., None]
    elif shape == "bottle":
        bcy = cy + 0.1 * s
        body_sd = _rounded_rect_sd(x - cx, y - bcy, 0.13 * s, 0.25 * s, 0.05 * s)
        neck_sd = _rounded_rect_sd(x - cx, y - (bcy - 0.31 * s), 0.05 * s, 0.08 * s, 0.01 * s)
        cap_sd = _rounded_rect_sd(x - cx, y - (bcy - 0.39 * s), 0.06 * s, 0.03 * s, 0.008 * s)
        sd = np.minimum(np.minimum(body_sd, neck_sd), cap_sd)
        coverage = np.clip(0.5 - sd, 0.0, 1.0)
        u = np.clip((x - cx) / (0.13 * s), -1.0, 1.0)
        shade = 0.4 + 0.6 * np.sqrt(np.clip(1.0 - (u + 0.25) ** 2 / 1.6, 0.0, 1.0))
        tint = np.where(cap_sd < 0.5, np.float32(0.35), np.float32(1.0))
        body = colour * (np.broadcast_to(shade, coverage.shape) * tint)[..., None]
    else:
        raise ValueError(f"unknown shape {shape!r}")

    cov = coverage[..., None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    mixed = region * (1.0 - cov) + body * cov
    canvas[y0:y1, x0:x1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(canvas, "RGB")


def _background(kind: str, width: int, height: int) -> NDArray[np.uint8]:
    """An (height, width, 3) uint8 background: colour ``a`` blending into ``b``."""
    a, b = (np.array(c, dtype=np.float32) for c in _BACKGROUNDS[kind])
    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    v = (np.arange(height, dtype=np.float32) + 0.5) / height
    if kind == "plain":
        return np.ascontiguousarray(np.broadcast_to(a.astype(np.uint8), (height, width, 3)))
    if kind == "vertical":
        t = np.broadcast_to(v[:, None], (height, width))
    elif kind == "diagonal":
        t = (u[None, :] + v[:, None]) / 2.0
    else:  # radial: a vignette, brightest in the middle
        du, dv = (u - 0.5) ** 2, (v - 0.5) ** 2
        t = np.clip(np.sqrt(du[None, :] + dv[:, None]) / 0.7071, 0.0, 1.0) ** 1.5
    # A 1024-entry lookup table is much cheaper than blending three float channels
    # per pixel, and still finer than 8-bit output can show.
    steps = np.linspace(0.0, 1.0, 1024, dtype=np.float32)[:, None]
    lut = np.clip(a + (b - a) * steps + 0.5, 0, 255).astype(np.uint8)
    index = (np.asarray(t, dtype=np.float32) * 1023.0 + 0.5).astype(np.uint16)
    return np.asarray(lut[index], dtype=np.uint8)


def _rounded_rect_sd(
    px: FloatArray, py: FloatArray, half_w: float, half_h: float, radius: float
) -> FloatArray:
    qx = np.abs(px) - (half_w - radius)
    qy = np.abs(py) - (half_h - radius)
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return np.asarray(outside + inside - radius, dtype=np.float32)
