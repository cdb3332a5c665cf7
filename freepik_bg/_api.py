"""The public API, imported all at once on first use of any name in `freepik_bg`.

`freepik_bg/__init__.py` imports nothing heavy itself, so that `freepik-bg --help`
and `import freepik_bg.testing` start fast; the first `freepik_bg.X` (or
`from freepik_bg import X`) imports this module, which loads the whole SDK (httpx,
anyio, tenacity), and the package publishes each name of its `__all__` from here.
Each name is imported `as` itself: an explicit re-export, for type checkers.
"""

from __future__ import annotations

from ._batch import BatchResults as BatchResults
from ._client import AsyncClient as AsyncClient
from ._config import BatchConfig as BatchConfig
from ._errors import (
    APIConnectionError as APIConnectionError,
    APIResponseValidationError as APIResponseValidationError,
    APIStatusError as APIStatusError,
    APITimeoutError as APITimeoutError,
    AuthenticationError as AuthenticationError,
    BadRequestError as BadRequestError,
    ConfigurationError as ConfigurationError,
    FreepikError as FreepikError,
    InsufficientCreditsError as InsufficientCreditsError,
    InternalServerError as InternalServerError,
    InvalidImageError as InvalidImageError,
    InvalidParam as InvalidParam,
    InvalidRequestError as InvalidRequestError,
    JournalError as JournalError,
    LinkExpiredError as LinkExpiredError,
    NotFoundError as NotFoundError,
    OutputConflictError as OutputConflictError,
    OutputNameError as OutputNameError,
    PermissionDeniedError as PermissionDeniedError,
    RateLimitError as RateLimitError,
    RedirectError as RedirectError,
    SinkError as SinkError,
    SkippedError as SkippedError,
    StagingError as StagingError,
    TransformError as TransformError,
)
from ._journal import Journal as Journal
from ._models import (
    BatchReport as BatchReport,
    BatchStats as BatchStats,
    Cutout as Cutout,
    ItemResult as ItemResult,
    ProgressEvent as ProgressEvent,
    ProgressHook as ProgressHook,
    ProgressKind as ProgressKind,
    RetryEvent as RetryEvent,
    Size as Size,
)
from ._plan import Plan as Plan, plan_batch as plan_batch
from ._retries import RetryPolicy as RetryPolicy, set_testing as set_testing
from ._sinks import (
    DirectorySink as DirectorySink,
    MemorySink as MemorySink,
    Sink as Sink,
    SinkItem as SinkItem,
    output_name as output_name,
)
from ._sync import remove_backgrounds as remove_backgrounds
from ._targets import LocalImage as LocalImage, local_images as local_images
from ._transform import transform as transform
from ._transform_options import TransformOptions as TransformOptions
from ._urls import url_identity as url_identity, validate_image_url as validate_image_url
from ._version import __version__ as __version__
