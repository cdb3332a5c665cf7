"""Test images for the transforms: cutouts with a known subject, ICC profiles, EXIF orientation."""

from __future__ import annotations

import io
import struct

from PIL import Image

RED = (200, 30, 30)
SRGB_PRIMARIES = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
"""sRGB's red, green and blue, adapted to D50 (the ICC connection space)."""
P3_PRIMARIES = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))
"""Display P3's primaries, adapted to D50."""


def cutout(
    size: tuple[int, int] = (200, 100),
    box: tuple[int, int, int, int] = (50, 20, 150, 80),
    color: tuple[int, int, int] = RED,
    *,
    icc: bytes | None = None,
    orientation: int | None = None,
) -> bytes:
    """A transparent PNG with an opaque rectangle of ``color`` over ``box``."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((*color, 255), box)
    extra: dict[str, object] = {}
    if icc is not None:
        extra["icc_profile"] = icc
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    out = io.BytesIO()
    image.save(out, "PNG", **extra)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    """The decoded image, loaded (the bytes may go)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def matrix_profile(
    description: str,
    primaries: tuple[tuple[float, float, float], ...],
    gamma: float = 2.2,
) -> bytes:
    """A minimal ICC v2 RGB display profile: three primaries and one gamma curve.

    ImageCms can only create sRGB, LAB and XYZ profiles; a Display-P3-like
    (or deliberately wrong) RGB profile is a few tags of fixed layout.
    """
    text = description.encode("ascii") + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    red, green, blue = primaries
    tags = [
        (b"desc", desc),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(*red)),
        (b"gXYZ", _xyz(*green)),
        (b"bXYZ", _xyz(*blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", offset + len(body))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _xyz(0.9642, 1.0, 0.8249)[8:]
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body
