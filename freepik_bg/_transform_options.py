"""What an output transform does: its options, their defaults and checks (no Pillow needed).

`TransformOptions` is the one place the transform defaults live; `BatchConfig`
takes the same options as fields (so the CLI derives its flags from them), and
`freepik_bg.transform` takes them as keywords.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import attrs

from ._colors import parse_color

__all__ = [
    "DEFAULT_QUALITY",
    "FORMATS",
    "OutputFormat",
    "TransformOptions",
    "check_background",
    "check_format",
    "check_margin",
    "check_max_side",
    "check_quality",
    "parse_format",
    "parse_margin",
    "parse_max_side",
    "parse_quality",
    "validator",
]

OutputFormat = Literal["png", "webp", "jpeg"]
FORMATS: tuple[OutputFormat, ...] = ("png", "webp", "jpeg")
DEFAULT_QUALITY = 90
"""JPEG and WebP quality: visually lossless for product photos at a fraction of a PNG's size."""
_EXTENSIONS: dict[str, str] = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
_ALIASES = {"jpg": "jpeg"}
_WHITE = (255, 255, 255)


def parse_format(text: str) -> OutputFormat:
    """``png``, ``webp`` or ``jpeg`` (``jpg`` too), in any case.

    Examples:
        >>> parse_format("JPG")
        'jpeg'
    """
    value = text.strip().lower()
    value = _ALIASES.get(value, value)
    for name in FORMATS:
        if value == name:
            return name
    raise ValueError(f"expected png, webp or jpeg, got {text!r}")


def check_format(output_format: object) -> OutputFormat:
    """One of `FORMATS`, exactly."""
    for name in FORMATS:
        if output_format == name:
            return name
    raise ValueError(f"output_format must be png, webp or jpeg, got {output_format!r}")


def _whole_number(name: str, low: int, high: int | None = None) -> Callable[[object], int]:
    """A check of whole numbers from ``low`` (to ``high``), naming the option."""
    span = f"from {low} to {high}" if high is not None else f"{low} or more"

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number {span}, got {value!r}")
        if value < low or (high is not None and value > high):
            raise ValueError(f"{name} must be a whole number {span}, got {value!r}")
        return value

    return check


def _from_text(check: Callable[[object], int]) -> Callable[[str], int]:
    """A flag's parser for ``check``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        return check(value)

    return parse


check_quality = _whole_number("quality", 1, 100)
parse_quality = _from_text(check_quality)
_check_side = _whole_number("max_side (pixels)", 1)
parse_max_side = _from_text(_check_side)


def check_max_side(max_side: object) -> int | None:
    """``None`` (no cap) or a whole number of pixels, 1 or more."""
    return None if max_side is None else _check_side(max_side)


def check_background(background: object) -> str | None:
    """``None`` (keep transparency) or a colour `parse_color` accepts."""
    if background is None:
        return None
    if not isinstance(background, str):
        raise ValueError(f"background must be a colour name or #rrggbb, got {background!r}")
    parse_color(background)
    return background


def parse_margin(text: str) -> int | str:
    """``N`` pixels or ``N%`` of the subject's longer side, 0 or more.

    Examples:
        >>> parse_margin("12"), parse_margin(" 5% ")
        (12, '5%')
    """
    value = text.strip()
    percent = value.endswith("%")
    number = value[:-1].strip() if percent else value
    problem = f"margin must be 0 or more pixels (12) or a percentage (5%), got {text!r}"
    try:
        amount = float(number) if percent else int(number)
    except ValueError:
        raise ValueError(problem) from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(problem)
    return f"{amount:g}%" if percent else int(amount)


def check_margin(margin: object) -> int | str:
    """A margin as `parse_margin` returns it, from an int or a string."""
    if isinstance(margin, bool) or not isinstance(margin, int | str):
        raise ValueError(f"margin must be pixels (12) or a percentage ('5%'), got {margin!r}")
    return parse_margin(str(margin))


def validator(check: Callable[[Any], object]) -> Callable[[Any, Any, Any], None]:
    """An attrs validator from a check that raises ``ValueError``."""

    def validate(_instance: Any, _attribute: Any, value: Any) -> None:
        check(value)

    return validate


@attrs.frozen(slots=True)
class TransformOptions:
    """What to do with a cutout before it is stored; the defaults leave it untouched.

    Attributes:
        output_format: ``png`` (the default; with no other option, the
            service's bytes untouched), ``webp`` (keeps transparency unless a
            background is given) or ``jpeg`` (no transparency: flattened onto
            ``background``, white by default). The file extension follows.
        quality: JPEG and WebP quality, 1 to 100.
        background: a CSS colour name or ``#rrggbb`` to flatten onto.
        trim: crop to the subject (the bounding box of its non-transparent pixels).
        margin: with ``trim``, transparent (or background) padding around the
            subject: pixels, or ``"N%"`` of the subject's longer side.
        max_side: downscale (never upscale) so that the longer side is at
            most this many pixels, margin included.

    Examples:
        >>> options = TransformOptions(output_format="jpeg", trim=True, margin="5%")
        >>> options.suffix, options.flatten_color
        ('.jpg', (255, 255, 255))
        >>> TransformOptions().identity
        True
    """

    output_format: OutputFormat = attrs.field(default="png", converter=parse_format)
    quality: int = attrs.field(default=DEFAULT_QUALITY, validator=validator(check_quality))
    background: str | None = attrs.field(default=None, validator=validator(check_background))
    trim: bool = False
    margin: int | str = attrs.field(default=0, converter=check_margin)
    max_side: int | None = attrs.field(default=None, validator=validator(check_max_side))

    def __attrs_post_init__(self) -> None:
        if self.margin not in (0, "0%") and not self.trim:
            raise ValueError("a margin pads the trimmed subject: add trim (--trim)")
        pixels = self.margin if isinstance(self.margin, int) else 0
        if self.max_side is not None and 2 * pixels >= self.max_side:
            raise ValueError(
                f"a {self.margin}-pixel margin on each side leaves no room for the subject "
                f"within max_side={self.max_side}: lower the margin or raise max_side"
            )

    @classmethod
    def of(cls, source: object) -> TransformOptions:
        """The options named like this class's fields, read from ``source`` (a `BatchConfig`)."""
        return cls(**{field.name: getattr(source, field.name) for field in attrs.fields(cls)})

    @property
    def identity(self) -> bool:
        """True when nothing is to be done: the service's PNG is stored as it is."""
        # Quality only matters to a lossy encoding: a PNG at any quality is untouched.
        # Compared field by field, not by building a copy: this is asked per item.
        return (
            self.output_format == "png"
            and self.background is None
            and not self.trim
            and self.margin == 0
            and self.max_side is None
        )

    @property
    def suffix(self) -> str:
        """The file extension of the output, dot included."""
        return _EXTENSIONS[self.output_format]

    @property
    def flatten_color(self) -> tuple[int, int, int] | None:
        """The colour to flatten onto, or ``None`` to keep transparency."""
        if self.background is not None:
            return parse_color(self.background)
        return _WHITE if self.output_format == "jpeg" else None

    def margin_pixels(self, longer_side: int) -> float:
        """The margin in pixels for a subject whose longer side is ``longer_side``."""
        if isinstance(self.margin, str):
            return float(self.margin[:-1]) / 100 * longer_side
        return float(self.margin)
