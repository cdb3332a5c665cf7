"""Shared helpers of the reliability suite: the secret, output checks, leak checks."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

import freepik_bg

from ..conftest import HTTP_BACKENDS, KEY, TRANSPORTS

__all__ = ["HTTP_BACKENDS", "KEY", "TRANSPORTS"]

#: Retry budget used by most tests here.
MAX_RETRIES = 3


def assert_outputs_valid(directory: Path) -> list[Path]:
    """Every visible output decodes fully as a PNG and no temp file is left; returns them."""
    leftovers = [p.name for p in directory.rglob("*.part")]
    assert not leftovers, f"temp files left behind: {leftovers[:5]}"
    outputs = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".png")
    for path in outputs:
        with Image.open(path) as image:
            assert image.format == "PNG", path
            image.load()  # decodes every byte: a truncated file raises here
    return outputs


def error_texts(error: BaseException) -> Iterable[str]:
    """Everything an application might print about an error: str, repr, traceback."""
    yield str(error)
    yield repr(error)
    yield "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if isinstance(error, freepik_bg.APIStatusError):
        yield repr(error.body)
        yield repr(dict(error.headers))
    cause = error.__cause__ or error.__context__
    if cause is not None:
        yield str(cause)
        yield repr(cause)


def assert_no_key(texts: Iterable[str], key: str = KEY) -> int:
    """No text holds the key (nor its distinctive middle); returns how many were checked."""
    checked = 0
    for text in texts:
        checked += 1
        assert key not in text, f"API key leaked in: {text[:300]}"
        assert "7f3a9c1e-SECRET" not in text, f"API key fragment leaked in: {text[:300]}"
    return checked
