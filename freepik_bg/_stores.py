"""obstore plumbing for the sink and the stager: URLs to stores, calls off the event loop.

Every obstore call runs in a worker thread through its blocking API, never
through its asyncio API: that API only works on asyncio, and its Tokio threads
call back into Python to complete futures, which can abort the process (SIGABRT)
if one of them is still inside such a call while the interpreter shuts down.
The blocking calls release the GIL and return only when the work is done, so
storage works under asyncio and trio alike and leaves no thread behind.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import anyio.from_thread
import anyio.to_thread

from ._errors import ConfigurationError
from ._urls import STORAGE_SCHEMES, is_storage_url

try:
    import obstore
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
    from obstore.store import LocalStore, MemoryStore
except ImportError:  # the ``storage`` extra is optional; require_obstore says how to get it
    HAVE_OBSTORE = False
else:
    HAVE_OBSTORE = True

if TYPE_CHECKING:
    from obstore import Attributes, PutMode
    from obstore.store import ObjectStore

__all__ = [
    "STORAGE_SCHEMES",
    "base_location",
    "endpoint_of",
    "failure_reason",
    "first_line",
    "is_storage_url",
    "open_store",
    "put_stream",
    "require_obstore",
    "run_blocking",
    "storage_scheme",
]

T = TypeVar("T")

SIGNING_SCHEMES = ("s3", "gs", "az", "abfs", "abfss")
"""The schemes whose stores can presign URLs (and need network)."""

# A multipart upload holds at most (concurrency + 1) parts of this size in memory.
UPLOAD_PART_SIZE = 5 * 1024 * 1024
UPLOAD_CONCURRENCY = 2

_CODE = re.compile(r"<Code>(\w+)</Code>")
_STATUS = re.compile(r"status code: (\d{3})")
_ENDPOINT = re.compile(r"\b(https?://[^/\s?]+)")
_UNREACHABLE = re.compile(r"error sending request|dns error|connect|timed out", re.IGNORECASE)
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
    | {"AuthenticationFailed", "InvalidAuthenticationInfo"}  # Azure's
)


def require_obstore() -> None:
    """Raise a `ConfigurationError` saying how to install obstore, if it is missing."""
    if not HAVE_OBSTORE:
        raise ConfigurationError(
            "object storage needs the obstore package: pip install 'freepik-bg[storage]'"
        )


def storage_scheme(url: str) -> str:
    """The lower-cased scheme of a storage URL; a `ConfigurationError` if unsupported.

    Examples:
        >>> storage_scheme("S3://bucket/")
        's3'
    """
    scheme, sep, _ = url.strip().partition("://")
    if not sep or scheme.lower() not in STORAGE_SCHEMES:
        shown = f"{scheme}://" if sep else repr(url)
        supported = ", ".join(f"{s}://" for s in STORAGE_SCHEMES)
        raise ConfigurationError(f"unsupported storage URL {shown}: use one of {supported}")
    return scheme.lower()


def open_store(url: str, **options: Any) -> tuple[ObjectStore, str]:
    """Build an obstore store for ``url`` and return it with the URL's base location.

    Credentials, regions and endpoints come from the environment, as obstore
    reads them (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``). A ``file://`` folder is
    created if missing. ``options`` go to `obstore.store.from_url`.

    Examples:
        >>> store, base = open_store("memory://")
        >>> base
        'memory:///'
    """
    scheme = storage_scheme(url)
    require_obstore()
    url = url.strip()
    try:
        if scheme == "memory":
            # Every memory:// URL is a fresh, empty store: it has no name to share.
            return MemoryStore(), "memory:///"
        if scheme == "file":
            path = Path(unquote(urlsplit(url).path))
            if not path.is_absolute() or urlsplit(url).netloc not in ("", "localhost"):
                raise ConfigurationError(f"{url!r} must name an absolute path: file:///abs/path/")
            path.mkdir(parents=True, exist_ok=True)
            return LocalStore(path), path.as_uri().rstrip("/") + "/"
        store = obstore.store.from_url(url, **options)
    except ConfigurationError:
        raise
    except (obstore.exceptions.BaseError, OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot use {url!r}: {first_line(exc)}") from exc
    parts = urlsplit(url)
    # The base shows in messages: never a password a URL might carry, nor a query.
    netloc = (
        parts.netloc.rpartition("@")[2] if ":" in parts.netloc.rpartition("@")[0] else parts.netloc
    )
    return store, f"{scheme}://{netloc}{parts.path.rstrip('/')}/"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (obstore's go on with debug dumps)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def base_location(store: ObjectStore) -> str:
    """The URL that keys of ``store`` are relative to, ending in ``/``."""
    if isinstance(store, MemoryStore):
        return "memory:///"
    if isinstance(store, LocalStore):
        return Path(store.prefix).as_uri().rstrip("/") + "/" if store.prefix else "file:///"
    # repr, not the config property: reading .config panics in obstore 0.12 for
    # stores built with some keyword options. repr names no credentials.
    text = repr(store)
    scheme = {"S3Store": "s3", "GCSStore": "gs", "AzureStore": "az"}.get(type(store).__name__)
    name = re.search(r'(?:bucket|container_name)="([^"]*)"', text)
    prefix = re.search(r'prefix="([^"]*)"', text)
    base = f"{scheme}://{name.group(1)}/" if scheme and name else f"{type(store).__name__}:/"
    return base + (prefix.group(1).strip("/") + "/" if prefix and prefix.group(1) else "")


async def run_blocking(
    func: Callable[..., T], *args: Any, limiter: anyio.CapacityLimiter | None = None, **kw: Any
) -> T:
    """Run a blocking obstore call in a worker thread (see the module docstring)."""
    return await anyio.to_thread.run_sync(functools.partial(func, *args, **kw), limiter=limiter)


class _StreamAborted(Exception):
    """Raised into obstore's read of the chunks so that it abandons the upload."""


async def put_stream(
    store: ObjectStore,
    key: str,
    chunks: AsyncIterator[bytes],
    *,
    mode: PutMode,
    attributes: Attributes | None,
    limiter: anyio.CapacityLimiter | None = None,
) -> Exception | None:
    """Upload ``chunks`` under ``key``; nothing is visible there unless all of it arrived.

    Returns the store's error, if the upload failed, and raises the stream's:
    the chunks are read here, in the caller's task, and handed one by one to
    the uploading thread. If reading them raises, the upload is abandoned
    (obstore aborts the multipart upload, or never sends the single PUT) and
    that same exception propagates. ``mode="overwrite"`` streams a multipart
    upload holding a few parts at a time; ``mode="create"`` is one conditional
    PUT, for which obstore keeps the whole object (once) until it is sent.
    """
    send, receive = anyio.create_memory_object_stream[bytes](1)
    aborted = False
    upload_error: Exception | None = None
    feed_error: Exception | None = None

    def body() -> Iterator[bytes]:
        while True:
            try:
                chunk = anyio.from_thread.run(receive.receive)
            except anyio.EndOfStream:
                if aborted:
                    raise _StreamAborted from None
                return
            yield chunk

    async def upload() -> None:
        nonlocal upload_error
        try:
            await run_blocking(
                obstore.put,
                store,
                key,
                body(),
                mode=mode,
                attributes=attributes,
                chunk_size=UPLOAD_PART_SIZE,
                max_concurrency=UPLOAD_CONCURRENCY,
                limiter=limiter,
            )
        except Exception as exc:
            upload_error = exc
        finally:
            receive.close()  # a failed upload stops the feeding below

    async with anyio.create_task_group() as tg:
        tg.start_soon(upload)
        try:
            async for chunk in chunks:
                await send.send(chunk)
        except anyio.BrokenResourceError:
            pass  # the upload ended early; its error is reported below
        except Exception as exc:
            feed_error = exc
            aborted = True
        except BaseException:
            aborted = True
            raise
        finally:
            send.close()
    # Raised outside the task group, so callers get the exception itself, not a group.
    if feed_error is not None:
        raise feed_error
    return upload_error


def failure_reason(exc: BaseException) -> str:
    """A short, secret-free account of a store failure, from obstore's error."""
    text = str(exc)
    code = _CODE.search(text)
    status = _STATUS.search(text)
    if isinstance(exc, UnauthenticatedError) or (code and code.group(1) in _CREDENTIAL_CODES):
        return "credentials refused" + (f" ({code.group(1)})" if code else "")
    if isinstance(exc, PermissionDeniedError) or (status and status.group(1) == "403"):
        return "access denied" + (f" ({code.group(1)})" if code else "")
    if code:
        return f"{code.group(1)} (HTTP {status.group(1)})" if status else code.group(1)
    if status:
        return f"HTTP {status.group(1)}"
    if _UNREACHABLE.search(text):
        return f"cannot reach the store ({first_line(exc)[:200]})"
    endpoint = endpoint_of(exc)
    if "builder error" in text and endpoint is not None and endpoint.startswith("http://"):
        # What obstore says of a plain-http endpoint it was not allowed to use (a local
        # MinIO, moto): nothing in it names the switch.
        return (
            f"the endpoint {endpoint} is plain http, which the store refuses unless allowed: "
            "set AWS_ALLOW_HTTP=true (or pass allow_http=True to the store)"
        )
    return first_line(exc)[:200]


def endpoint_of(exc: BaseException) -> str | None:
    """The ``scheme://host:port`` that an obstore error says it talked to."""
    found = _ENDPOINT.search(str(exc))
    # Only scheme://host:port: never a path, a query or user info.
    return found.group(1).rpartition("@")[2] if found else None
