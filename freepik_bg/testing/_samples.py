"""The catalogue of generated sample files (pure Python: no Pillow or numpy needed here)."""

from __future__ import annotations

import enum

import attrs

__all__ = ["SampleInfo", "SampleKind", "generate_sample", "sample_info", "sample_names"]


class SampleKind(str, enum.Enum):
    """What a sample is for."""

    #: A product-style object on a plain or gradient background (JPEG or PNG).
    OBJECT = "object"
    #: A GIF image: a format the service rejects.
    GIF = "gif"
    #: A PNG-signature file over 20 MB: rejected for its size.
    OVERSIZE = "oversize"
    #: An HTML page served with 200: not an image at all.
    HTML = "html"
    #: JPEG magic bytes followed by garbage: rejected because it cannot be decoded.
    CORRUPT = "corrupt"


@attrs.frozen
class SampleInfo:
    """Describes one sample the emulator can serve under ``/samples/<name>``.

    Examples:
        >>> info = sample_info("mug-plain.jpg")
        >>> (info.width, info.height)
        (800, 600)
    """

    name: str
    kind: SampleKind
    content_type: str
    description: str
    #: Pixel size for image samples, None for the others.
    width: int | None = None
    height: int | None = None
    #: For OBJECT samples: "ball", "mug" or "bottle".
    shape: str | None = None
    #: For OBJECT samples: "plain", "vertical", "diagonal" or "radial".
    background: str | None = None
    #: For OBJECT samples: a pixel (x, y) well inside the object, for opacity checks.
    object_point: tuple[int, int] | None = None

    @property
    def megapixels(self) -> float:
        """Width times height in millions of pixels (0 for non-image samples)."""
        if self.width is None or self.height is None:
            return 0.0
        return self.width * self.height / 1_000_000


def _object(
    name: str, shape: str, background: str, width: int, height: int, description: str
) -> SampleInfo:
    fmt = "image/png" if name.endswith(".png") else "image/jpeg"
    # Every shape is drawn centred; the centre pixel is inside the object's body.
    cx, cy = width // 2, height // 2
    if shape == "mug":
        # The mug's body sits left of centre to make room for the handle.
        cx = int(width / 2 - 0.06 * min(width, height))
    elif shape == "bottle":
        cy = int(height / 2 + 0.1 * min(width, height))
    return SampleInfo(
        name=name,
        kind=SampleKind.OBJECT,
        content_type=fmt,
        description=description,
        width=width,
        height=height,
        shape=shape,
        background=background,
        object_point=(cx, cy),
    )


_CATALOGUE: tuple[SampleInfo, ...] = (
    _object("ball-small.png", "ball", "plain", 160, 120, "tiny red ball, plain background"),
    _object("mug-plain.jpg", "mug", "plain", 800, 600, "teal mug, plain off-white background"),
    _object("mug-plain.png", "mug", "plain", 800, 600, "teal mug, plain off-white background"),
    _object(
        "bottle-gradient.jpg", "bottle", "vertical", 600, 900, "green bottle, vertical gradient"
    ),
    _object(
        "bottle-gradient.png", "bottle", "vertical", 600, 900, "green bottle, vertical gradient"
    ),
    _object("ball-radial.jpg", "ball", "radial", 640, 640, "red ball, radial vignette"),
    _object("ball-radial.png", "ball", "radial", 640, 640, "red ball, radial vignette"),
    _object("mug-diagonal-2mp.jpg", "mug", "diagonal", 1600, 1200, "mug, diagonal gradient"),
    _object(
        "bottle-diagonal-12mp.jpg",
        "bottle",
        "diagonal",
        4000,
        3000,
        "12-megapixel bottle, diagonal gradient (generated on first use: about a second)",
    ),
    _object(
        "bottle-diagonal-25mp.jpg",
        "bottle",
        "diagonal",
        5800,
        4350,
        "25-megapixel bottle, the service's largest output (generated on first use: seconds)",
    ),
    SampleInfo(
        name="animated.gif",
        kind=SampleKind.GIF,
        content_type="image/gif",
        description="a two-frame GIF: an unsupported format",
        width=64,
        height=64,
    ),
    SampleInfo(
        name="too-large.png",
        kind=SampleKind.OVERSIZE,
        content_type="image/png",
        description="a valid small PNG padded with a 22 MiB ancillary chunk: over the 20 MB limit",
        width=64,
        height=64,
    ),
    SampleInfo(
        name="page.html",
        kind=SampleKind.HTML,
        content_type="text/html; charset=utf-8",
        description="an HTML page served with 200, as a login wall or error page would be",
    ),
    SampleInfo(
        name="corrupt.jpg",
        kind=SampleKind.CORRUPT,
        content_type="image/jpeg",
        description="JPEG magic bytes followed by garbage: cannot be decoded",
    ),
)

_BY_NAME = {info.name: info for info in _CATALOGUE}


def sample_names() -> tuple[str, ...]:
    """Names of every sample the emulator serves under ``/samples/<name>``.

    Examples:
        >>> "mug-plain.jpg" in sample_names()
        True
    """
    return tuple(_BY_NAME)


def sample_info(name: str) -> SampleInfo:
    """The description of sample ``name``; raises KeyError for an unknown name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(_BY_NAME)}") from None


def generate_sample(name: str) -> bytes:
    """The bytes of sample ``name``, generated deterministically (needs Pillow and numpy).

    Examples:
        ```python
        from pathlib import Path

        Path("ball.png").write_bytes(generate_sample("ball-small.png"))
        ```
    """
    from freepik_bg.testing._render import generate_sample as generate

    return generate(name)
