"""freepik_bg: remove image backgrounds at scale with Freepik's API, from async Python.

Examples:
    >>> import freepik_bg
    >>> async def main() -> None:
    ...     async with freepik_bg.AsyncClient() as client:  # key from $FREEPIK_API_KEY
    ...         cutout = await client.remove_background("https://example.com/shoe.jpg")
    ...         await client.download_to(cutout, "shoe.png")
"""

import logging as _logging
from typing import TYPE_CHECKING

from ._batch import BatchResults
from ._client import AsyncClient
from ._config import BatchConfig, validate_image_url
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
    JournalError,
    LinkExpiredError,
    NotFoundError,
    OutputConflictError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    SinkError,
    SkippedError,
    StagingError,
    TransformError,
)
from ._journal import Journal
from ._models import (
    BatchReport,
    BatchStats,
    Cutout,
    ItemResult,
    ProgressEvent,
    ProgressHook,
    ProgressKind,
    RetryEvent,
    Size,
)
from ._plan import Plan, plan_batch
from ._retries import RetryPolicy, set_testing
from ._sinks import DirectorySink, MemorySink, Sink, SinkItem, output_name
from ._sync import remove_backgrounds
from ._targets import LocalImage, local_images
from ._transform import transform
from ._transform_options import TransformOptions
from ._version import __version__

# A library leaves logging output to the application (the CLI configures it).
_logging.getLogger("freepik_bg").addHandler(_logging.NullHandler())

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchConfig",
    "BatchReport",
    "BatchResults",
    "BatchStats",
    "ConfigurationError",
    "Cutout",
    "DirectorySink",
    "FreepikError",
    "InsufficientCreditsError",
    "InternalServerError",
    "InvalidImageError",
    "InvalidParam",
    "InvalidRequestError",
    "ItemResult",
    "Journal",
    "JournalError",
    "LinkExpiredError",
    "LocalImage",
    "MemorySink",
    "NotFoundError",
    "ObjectStoreSink",
    "OutputConflictError",
    "PermissionDeniedError",
    "Plan",
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
    "StagingError",
    "TransformError",
    "TransformOptions",
    "__version__",
    "local_images",
    "output_name",
    "plan_batch",
    "remove_backgrounds",
    "set_testing",
    "transform",
    "validate_image_url",
]

if TYPE_CHECKING:
    from ._storage import ObjectStoreSink


def __getattr__(name: str) -> object:
    # ObjectStoreSink needs the optional obstore: imported on first use, so that
    # `import freepik_bg` stays light (the CLI's start-up time depends on it).
    if name == "ObjectStoreSink":
        from ._storage import ObjectStoreSink

        ObjectStoreSink.__module__ = "freepik_bg"
        return ObjectStoreSink
    raise AttributeError(f"module 'freepik_bg' has no attribute {name!r}")


# Show the public path in reprs and tracebacks (`freepik_bg.AsyncClient`, not
# `freepik_bg._client.AsyncClient`), as httpx does; pickling finds them here too.
_globals = globals()
for _name in __all__:
    if _name not in _globals:
        continue  # a lazy export (see __getattr__)
    _obj = _globals[_name]
    if callable(_obj) and getattr(_obj, "__module__", "").startswith("freepik_bg."):
        _obj.__module__ = "freepik_bg"
del _globals, _name, _obj
