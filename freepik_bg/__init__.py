"""freepik_bg: remove image backgrounds at scale with Freepik's API, from async Python.

Example:
    >>> import freepik_bg
    >>> async def main() -> None:
    ...     async with freepik_bg.AsyncClient() as client:  # key from $FREEPIK_API_KEY
    ...         cutout = await client.remove_background("https://example.com/shoe.jpg")
    ...         await client.download_to(cutout, "shoe.png")
"""

import logging as _logging

from ._batch import (
    BatchOptions,
    BatchResults,
    BatchStats,
    ProgressEvent,
    ProgressHook,
    ProgressKind,
)
from ._client import AsyncClient, ImageStream, __version__
from ._config import DEFAULT_BASE_URL, validate_image_url
from ._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    FreepikError,
    InsufficientCreditsError,
    InternalServerError,
    InvalidImageError,
    InvalidParam,
    InvalidRequestError,
    LinkExpiredError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    SinkError,
    SkippedError,
)
from ._journal import Journal
from ._models import LINK_TTL, SIZES, BatchReport, Cutout, ItemResult, Size
from ._retries import Classification, RetryEvent, RetryPolicy, parse_retry_after, set_testing
from ._sinks import DirectorySink, MemorySink, Sink, SinkItem, output_name
from ._sync import remove_backgrounds

# A library leaves logging output to the application (the CLI configures it).
_logging.getLogger("freepik_bg").addHandler(_logging.NullHandler())

__all__ = [
    "DEFAULT_BASE_URL",
    "LINK_TTL",
    "SIZES",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchOptions",
    "BatchReport",
    "BatchResults",
    "BatchStats",
    "Classification",
    "ConfigurationError",
    "Cutout",
    "DirectorySink",
    "FreepikError",
    "ImageStream",
    "InsufficientCreditsError",
    "InternalServerError",
    "InvalidImageError",
    "InvalidParam",
    "InvalidRequestError",
    "ItemResult",
    "Journal",
    "LinkExpiredError",
    "MemorySink",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressEvent",
    "ProgressHook",
    "ProgressKind",
    "RateLimitError",
    "RedirectError",
    "RetryEvent",
    "RetryPolicy",
    "Sink",
    "SinkError",
    "SinkItem",
    "Size",
    "SkippedError",
    "__version__",
    "output_name",
    "parse_retry_after",
    "remove_backgrounds",
    "set_testing",
    "validate_image_url",
]
