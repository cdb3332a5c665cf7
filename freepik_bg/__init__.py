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

from ._lazy import lazy_exports

if TYPE_CHECKING:
    # For type checkers and IDEs; at run time `__getattr__` imports these on first use.
    from ._api import *
    from ._storage import ObjectStoreSink
    from ._version import __version__  # a star import leaves out _-names

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
    "OutputNameError",
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
    "url_identity",
    "validate_image_url",
]


# Nothing heavy is imported with the package: `freepik-bg --help` and the emulator's
# own imports must not pay for httpx (~0.2 s). The first public name asked for
# imports the whole SDK (`_api`) and binds every name at once.
_load, __dir__ = lazy_exports(__name__, __all__, public_path=True)


def __getattr__(name: str) -> object:
    if name == "ObjectStoreSink":
        # Needs the optional obstore: imported on its own first use.
        from ._storage import ObjectStoreSink

        ObjectStoreSink.__module__ = __name__
        globals()[name] = ObjectStoreSink
        return ObjectStoreSink
    return _load(name)
