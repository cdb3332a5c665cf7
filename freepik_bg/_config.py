"""Configuration: every default in one place, the batch options object, the environment's lookup."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from . import _transform_options as tx
from ._errors import ConfigurationError
from ._journal import Journal
from ._models import SIZES, ProgressHook, Size, check_sizes, normalize_sizes, parse_sizes
from ._urls import is_storage_url

if TYPE_CHECKING:
    import httpx

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_BURST",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RATE",
    "ENDPOINT_PATH",
    "BatchConfig",
    "resolve_api_key",
    "resolve_base_url",
]

API_KEY_ENV = "FREEPIK_API_KEY"
BASE_URL_ENV = "FREEPIK_BASE_URL"
DEFAULT_BASE_URL = "https://api.freepik.com"
ENDPOINT_PATH = "/v1/ai/beta/remove-background"

DEFAULT_MAX_RETRIES = 5
"""Six attempts in all: enough to ride out a burst of 429s or a short outage in bulk runs."""

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
"""A 25-megapixel RGBA PNG is at most ~100 MB uncompressed; twice that is clearly wrong."""

DEFAULT_CONCURRENCY = 32
"""Enough in flight to keep 10 requests/s going when each takes a few seconds."""
DEFAULT_RATE = 10.0
"""Freepik's documented sustained limit per IP and key: 10 requests/s over 2 minutes."""
DEFAULT_BURST = 50
"""Freepik allows bursts up to 50 requests/s."""


def resolve_api_key(api_key: str | None) -> str:
    """The explicit key, else ``$FREEPIK_API_KEY``; a clear error when neither is set."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key is None or not key.strip():
        raise ConfigurationError(
            f"No API key: pass api_key=... or set the {API_KEY_ENV} environment variable."
        )
    key = key.strip()
    # A key that cannot be a header value would fail deep inside httpx, with the
    # key in the exception's repr: say what is wrong, by position, never echoing it.
    for position, char in enumerate(key, start=1):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise ConfigurationError(
                f"The API key has a control character at position {position} of {len(key)}: "
                "copy it again from your Freepik dashboard."
            )
        if not char.isascii():
            raise ConfigurationError(
                f"The API key has a non-ASCII character (U+{ord(char):04X}) at position "
                f"{position} of {len(key)}; keys are plain ASCII. Was it pasted with curly "
                "quotes or a stray symbol? Copy it again from your Freepik dashboard."
            )
        if char.isspace():
            raise ConfigurationError(
                f"The API key has a space at position {position} of {len(key)}: "
                "copy it again from your Freepik dashboard."
            )
    return key


def resolve_base_url(base_url: str | httpx.URL | None) -> httpx.URL:
    """The explicit base URL, else ``$FREEPIK_BASE_URL``, else the production API."""
    import httpx  # here, not at the top: the CLI's --help must not pay for httpx

    raw = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = httpx.URL(str(raw))
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"Invalid base_url {str(raw)!r}: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {str(raw)!r}")
    path = url.path.rstrip("/")
    return url.copy_with(path=path, query=None, fragment=None)


# -- batch options -------------------------------------------------------------


def at_least(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers no smaller than ``minimum``, for flags."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _check_rate(_instance: object, _attribute: object, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ValueError(
            f"rate must be a positive number of POSTs per second, or None (--rate off): {value!r}"
        )


def parse_rate(text: str) -> float | None:
    """``"off"`` (or ``"none"``, ``"0"``) for no limit, else a positive number."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of POSTs per second or 'off', got {text!r}") from None
    _check_rate(None, None, value)
    return value


def parse_seconds(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be 0 or more seconds, got {text}")
    return value


def _option(
    default: Any,
    *,
    help: str,
    parse: Callable[[str], Any] | None = None,
    cli: bool = True,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    validator: Any = None,
    flag: str | None = None,
    converter: Any = None,
) -> Any:
    """A `BatchConfig` field; the metadata is what the CLI builds its flag from.

    The flag is ``--`` and the field's name with dashes, unless ``flag`` names it.
    """
    metadata = {
        "help": help,
        "parse": parse,
        "cli": cli,
        "metavar": metavar,
        "choices": choices,
        "flag": flag,
    }
    return attrs.field(
        default=default,
        validator=validator,
        converter=converter,
        metadata=metadata,
        kw_only=True,
    )


def _check_stage(_instance: object, _attribute: object, value: str | None) -> None:
    fetchable = isinstance(value, str) and is_storage_url(value)
    if value is not None and not (fetchable and not value.startswith(("file:", "memory:"))):
        raise ValueError(
            f"stage must be an s3://, gs:// or az:// prefix the service can fetch from, "
            f"got {value!r}"
        )


@attrs.frozen(slots=True)
class BatchConfig:
    """Every option of a batch, with its default, in one place.

    `AsyncClient.batch` takes these as keyword arguments and builds one;
    `AsyncClient.run_batch`, `remove_backgrounds`, the CLI and the Dask
    integration take the object (or the same keywords). The CLI's flags are
    derived from these fields, so they cannot drift apart.

    Attributes:
        concurrency: most items in flight. It halves on repeated 429s and
            grows back (AIMD).
        rate: a client-side limit on POSTs per second, shared by all tasks and
            their retries; ``None``: learn the server's limit from its 429s (a
            slow start, then the rate the server accepted; see
            docs/batching.md). A 429 pauses every submission.
        burst: how many POSTs may go at once before ``rate`` applies.
        size: which rendition to store, or a tuple of several
            (``("high_resolution", "preview")``): one POST, one output each.
        journal: a JSON-lines file (or `Journal`) recording each item; rerun
            with the same journal to skip stored items without a request,
            retry failed ones, and download links already paid for while they live.
        overwrite: with ``False``, an existing output is skipped without
            spending a credit.
        fail_fast: stop at the first failure. The batch always stops on 401,
            402 and 403; the remaining items are not attempted.
        resubmit_expired: how many times to submit again when a link expired
            before it could be downloaded (each costs a credit).
        repay_missing_renditions: when an earlier run stored some renditions
            of an item and the links it paid for have expired, pay one more
            POST for the missing ones; without it, such an item fails with a
            `LinkExpiredError` that says to pass this.
        stage: an object-storage prefix (``s3://bucket/staging/``, ``gs://...``,
            ``az://...``) that local images (`pathlib.Path` items, or paths in a
            URL list) are uploaded to; the service fetches each through a
            presigned link. Needs the ``storage`` extra.
        keep_staged: keep the staged copies; by default each is deleted once
            its item is finished.
        progress: called with a `ProgressEvent` as things happen.
        drain_timeout: when the batch stops (Ctrl-C, a cancelled scope, leaving
            the block), POSTs already sent are finished, downloaded and stored,
            for at most this many seconds; items not yet sent are dropped.
        output_format, quality, background, trim, margin, max_side: what to
            do with each cutout before it is stored (see `TransformOptions`;
            the defaults store the service's PNG untouched). Needs the
            ``image`` extra (Pillow).
        keep_png: with a transform, also store the service's untouched PNG
            beside the output (``NAME.png``, or ``NAME.untouched.png`` when the
            output is a PNG itself).

    Examples:
        >>> config = BatchConfig(concurrency=8, rate=5)
        >>> config.evolve(overwrite=True).overwrite
        True
    """

    concurrency: int = _option(
        DEFAULT_CONCURRENCY,
        help=f"items in flight (default {DEFAULT_CONCURRENCY})",
        parse=at_least(1),
        validator=attrs.validators.ge(1),
    )
    rate: float | None = _option(
        DEFAULT_RATE,
        help=f"POSTs per second, or 'off' to learn the server's limit from its 429s "
        f"(default {DEFAULT_RATE:g}, Freepik's documented limit)",
        parse=parse_rate,
        validator=_check_rate,
    )
    burst: int = _option(
        DEFAULT_BURST,
        help=f"POSTs that may go at once before --rate applies (default {DEFAULT_BURST})",
        parse=at_least(1),
        validator=attrs.validators.ge(1),
    )
    size: Size | tuple[Size, ...] = _option(
        "high_resolution",
        help=f"the rendition(s) to store from one POST, comma-separated: {', '.join(SIZES)} "
        "(default high_resolution)",
        parse=parse_sizes,
        metavar="SIZE[,SIZE]",
        validator=lambda _i, _a, value: check_sizes(value),
        converter=normalize_sizes,
    )
    journal: str | os.PathLike[str] | Journal | None = _option(
        None,
        help="resume journal (the CLI's default: OUTPUT/.freepik-bg-journal.jsonl)",
        metavar="FILE",
    )
    overwrite: bool = _option(False, help="replace existing outputs instead of skipping them")
    fail_fast: bool = _option(False, help="stop at the first failed item")
    resubmit_expired: int = _option(
        1,
        help="times to submit again when a result link expired before its download (default 1)",
        parse=at_least(0),
        validator=attrs.validators.ge(0),
    )
    repay_missing_renditions: bool = _option(
        False,
        help="pay one more POST for renditions missing from an item stored by an earlier "
        "run, once the links it paid for have expired",
    )
    stage: str | None = _option(
        None,
        help="object-storage prefix (s3://bucket/staging/) to upload local images to, so the "
        "service can fetch them through presigned links",
        metavar="URL",
        validator=_check_stage,
    )
    keep_staged: bool = _option(
        False, help="keep the staged copies of local images (default: delete each when done)"
    )
    progress: ProgressHook | None = _option(None, help="called with each ProgressEvent", cli=False)
    drain_timeout: float = _option(
        30.0,
        help="seconds to finish POSTs already sent when stopping, before abandoning them "
        "(default 30)",
        parse=parse_seconds,
        validator=attrs.validators.ge(0),
    )
    output_format: tx.OutputFormat = _option(
        "png",
        help="png (the default: the service's PNG untouched), webp (keeps transparency unless "
        "--background is given) or jpeg (flattened, on white unless --background is given)",
        parse=tx.parse_format,
        flag="--format",
        metavar="{png,webp,jpeg}",
        validator=tx.validator(tx.check_format),
    )
    quality: int = _option(
        tx.DEFAULT_QUALITY,
        help=f"JPEG/WebP quality, 1-100 (default {tx.DEFAULT_QUALITY})",
        parse=tx.parse_quality,
        validator=tx.validator(tx.check_quality),
    )
    background: str | None = _option(
        None,
        help="flatten onto this colour: a CSS name (white, whitesmoke, ...) or #rrggbb",
        parse=lambda text: tx.check_background(text.strip()),
        metavar="COLOR",
        validator=tx.validator(tx.check_background),
    )
    trim: bool = _option(False, help="crop each cutout to its subject (non-transparent pixels)")
    margin: int | str = _option(
        0,
        help="with --trim, padding around the subject: N pixels or N%% of its longer side",
        parse=tx.parse_margin,
        metavar="N|N%",
        validator=tx.validator(tx.check_margin),
    )
    max_side: int | None = _option(
        None,
        help="downscale (never upscale) so the longer side is at most N pixels",
        parse=tx.parse_max_side,
        metavar="N",
        validator=tx.validator(tx.check_max_side),
    )
    keep_png: bool = _option(
        False, help="with a transform, also keep the service's untouched PNG beside the output"
    )

    def __attrs_post_init__(self) -> None:
        # Options that only make sense together are checked here, before any POST.
        transform = self.transform_options  # raises for a margin without trim, ...
        if self.keep_png and transform.identity:
            raise ValueError(
                "keep_png (--keep-png) keeps the service's PNG beside a transformed output: "
                "add a transform (--format, --background, --trim, --max-side), or drop it"
            )

    @property
    def transform_options(self) -> tx.TransformOptions:
        """The transform options of this batch as one object (see `TransformOptions`)."""
        return tx.TransformOptions.of(self)

    def evolve(self, **changes: Any) -> BatchConfig:
        """A copy with ``changes``; an unknown name is a ``TypeError`` listing the valid ones."""
        unknown = sorted(set(changes) - set(attrs.fields_dict(BatchConfig)))
        if unknown:
            valid = ", ".join(attrs.fields_dict(BatchConfig))
            raise TypeError(f"unknown batch option(s) {', '.join(unknown)}; valid: {valid}")
        return attrs.evolve(self, **changes)

    @property
    def sizes(self) -> tuple[Size, ...]:
        """``size`` as a tuple: the renditions each item stores, in order.

        Examples:
            >>> BatchConfig(size=["high_resolution", "preview"]).sizes
            ('high_resolution', 'preview')
        """
        return (self.size,) if isinstance(self.size, str) else self.size

    @classmethod
    def build(cls, config: BatchConfig | None, options: Mapping[str, Any]) -> BatchConfig:
        """``config`` (or the defaults) with ``options`` applied."""
        base = config if config is not None else cls()
        return base.evolve(**options) if options else base
