"""Object storage as a destination: S3, GCS, Azure, a local folder or memory, through obstore."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import anyio
import anyio.to_thread

from ._errors import OutputConflictError, SinkError
from ._sinks import SOURCE_XATTR, SinkItem, check_output_name, recorded_source, same_image
from ._stores import (
    SIGNING_SCHEMES,
    STORAGE_SCHEMES,
    base_location,
    endpoint_of,
    failure_reason,
    first_line,
    is_storage_url,
    open_store,
    put_stream,
    require_obstore,
    run_blocking,
    storage_scheme,
)
from ._urls import url_identity

try:
    import obstore
    from obstore.exceptions import AlreadyExistsError
    from obstore.store import LocalStore, MemoryStore
except ImportError:  # the ``storage`` extra is optional; require_obstore says how to get it
    pass

if TYPE_CHECKING:
    from obstore import Attributes
    from obstore.store import ObjectStore

__all__ = [
    "SOURCE_ATTRIBUTE",
    "STORAGE_SCHEMES",
    "ObjectStoreSink",
    "encode_source",
    "is_storage_url",
    "sink_from_url",
]


SOURCE_ATTRIBUTE = "freepikbgsource"
"""Object metadata key holding the source URL: letters only, since Azure allows no
hyphens in metadata names and proxies in front of S3-compatible stores often drop
headers with underscores."""
# S3 caps all user metadata at 2 KB; longer URLs are recorded by their digest.
_MAX_SOURCE_VALUE = 1024
_PLAIN_SOURCE = re.compile(r"[!-~](?:[ -~]*[!-~])?")

DEFAULT_MAX_UPLOADS = 32
DEFAULT_CHECK_TIMEOUT = 15.0


def sink_from_url(
    url: str, *, overwrite: bool, check_timeout: float = DEFAULT_CHECK_TIMEOUT
) -> ObjectStoreSink:
    """An `ObjectStoreSink` writing under ``url`` (``s3://bucket/prefix/``...).

    Raises:
        ConfigurationError: an unsupported scheme, a malformed URL, or obstore
            is not installed.

    Examples:
        >>> sink = sink_from_url("memory://", overwrite=False)
        >>> sink.location("cat.png")
        'memory:///cat.png'
    """
    store, base = open_store(url)
    probe = None
    if storage_scheme(url) in SIGNING_SCHEMES:
        # A second client for check() alone, whose retries give up in time.
        retry = {"max_retries": 1, "retry_timeout": timedelta(seconds=check_timeout)}
        probe, _ = open_store(url, retry_config=retry)
    return ObjectStoreSink(
        store, overwrite=overwrite, base=base, probe=probe, check_timeout=check_timeout
    )


def encode_source(url: str) -> str:
    """How a source URL is recorded in object metadata: ASCII, at most 1 KB.

    Plain ASCII URLs are kept as they are, others percent-encoded after an
    RFC 8187 ``UTF-8''`` marker, and very long ones replaced by their SHA-256.

    Examples:
        >>> encode_source("https://example.com/caf\\u00e9.jpg")
        "UTF-8''https%3A%2F%2Fexample.com%2Fcaf%C3%A9.jpg"
    """
    if len(url) <= _MAX_SOURCE_VALUE and _PLAIN_SOURCE.fullmatch(url):
        return url
    quoted = "UTF-8''" + quote(url, safe="", errors="surrogatepass")
    if len(quoted) <= _MAX_SOURCE_VALUE:
        return quoted
    return "sha256:" + hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def _decode_source(recorded: str) -> str | None:
    """The URL that `encode_source` recorded, or None where only its hash was kept."""
    if recorded.startswith("UTF-8''"):
        return unquote(recorded[7:], errors="surrogatepass")
    if recorded.startswith("sha256:"):
        return None
    return recorded


def _describe_source(recorded: str) -> str:
    url = _decode_source(recorded)
    return f"a URL with SHA-256 {recorded[7:19]}..." if url is None else url


def _recorded_is(recorded: str, image_url: str) -> bool:
    """Whether the source recorded on an object is ``image_url``, however spelled."""
    url = _decode_source(recorded)
    if url is None:  # a URL over 1 KB: its hash, of the spelling it was stored under
        return recorded in (encode_source(image_url), encode_source(url_identity(image_url)))
    return same_image(url, image_url)


class ObjectStoreSink:
    """A [`Sink`][freepik_bg.Sink] writing cutouts to object storage through obstore.

    Each item goes to ``base + prefix + item.name`` with ``Content-Type:
    image/png`` and its source URL in the ``freepikbgsource`` metadata, so
    that [`exists`][freepik_bg.ObjectStoreSink.exists] can tell whose object it is. With
    ``overwrite=False`` every write is create-only (a conditional PUT), so two writers never
    replace each other's object. Works under asyncio and trio.

    Args:
        store: an obstore store (``S3Store``, ``GCSStore``, ``AzureStore``,
            ``LocalStore``, ``MemoryStore``).
        prefix: prepended to every item name, as is (``"cutouts/"``).
        overwrite: replace existing objects (streams as a multipart upload)
            instead of create-only writes (one PUT, the object held in memory).
        base: the URL of the store's root, for messages and returned
            locations; derived from ``store`` when not given.
        probe: the same target with quick retries, for [`check`][freepik_bg.ObjectStoreSink.check].
        check_timeout: the seconds [`check`][freepik_bg.ObjectStoreSink.check] may take.
        max_uploads: uploads in flight at once (each holds a worker thread).

    Examples:
        >>> from obstore.store import MemoryStore
        >>> sink = ObjectStoreSink(MemoryStore(), prefix="cutouts/")
        >>> sink.location("cat.png")
        'memory:///cutouts/cat.png'
    """

    def __init__(
        self,
        store: ObjectStore,
        prefix: str = "",
        *,
        overwrite: bool = False,
        base: str | None = None,
        probe: ObjectStore | None = None,
        check_timeout: float = DEFAULT_CHECK_TIMEOUT,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
    ) -> None:
        require_obstore()
        self.object_store = store
        self.prefix = prefix.lstrip("/")
        self.overwrite = overwrite
        self.base = base or base_location(store)
        self._probe = probe or store
        self._check_timeout = check_timeout
        self._max_uploads = max_uploads
        # Created on first use: a limiter belongs to the event loop that makes it.
        self._limiter: anyio.CapacityLimiter | None = None

    def key_for(self, item: SinkItem) -> str:
        """The key an item is stored under; never escapes the prefix."""
        return self.prefix + check_output_name(item.name)

    def location(self, name: str) -> str:
        """The URL of the object for an item named ``name``."""
        return self.base + self.prefix + name

    def _local_path(self, key: str) -> Path | None:
        if isinstance(self.object_store, LocalStore) and self.object_store.prefix is not None:
            return Path(self.object_store.prefix) / key
        return None

    def _error(self, action: str, key: str, exc: BaseException) -> SinkError:
        return SinkError(f"cannot {action} {self.base}{key}: {failure_reason(exc)}")

    async def exists(self, item: SinkItem) -> str | None:
        """The object's URL if it is there and holds ``item``'s cutout, else ``None``.

        Raises:
            OutputConflictError: the object's metadata names another source URL.
            SinkError: the store could not be asked.
        """
        key = self.key_for(item)
        try:
            result = await run_blocking(obstore.get, self.object_store, key, options={"head": True})
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error("look up", key, exc) from exc
        recorded = {k.lower(): v for k, v in result.attributes.items()}.get(SOURCE_ATTRIBUTE)
        path = self._local_path(key)
        if recorded is None and path is not None:
            local = recorded_source(path)
            recorded = None if local is None else encode_source(local)
        # No record (written by another tool, or a filesystem without xattrs):
        # the name carries 96 bits of the URL's hash, so trust it.
        if recorded is not None and not _recorded_is(recorded, item.image_url):
            raise OutputConflictError(
                f"{self.location(item.name)} holds the cutout of {_describe_source(recorded)}, "
                f"not of {item.image_url}: move it away, or pass overwrite=True (--overwrite) "
                "to replace it"
            )
        return self.location(item.name)

    async def store(self, item: SinkItem, chunks: AsyncIterator[bytes]) -> str:
        """Upload the chunks under the item's key and return the object's URL.

        If iterating ``chunks`` raises, nothing is left under the key and the
        exception propagates unchanged.

        Raises:
            OutputConflictError: create-only, and another URL's cutout got there first.
            SinkError: the store refused the upload.
        """
        key = self.key_for(item)
        path = self._local_path(key)
        # LocalStore keeps no attributes; the source goes in an xattr instead.
        attributes: Attributes | None = None
        if path is None:
            attributes = {"Content-Type": _content_type(item.name)}
            attributes[SOURCE_ATTRIBUTE] = encode_source(item.image_url)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_uploads)
        error = await put_stream(
            self.object_store,
            key,
            chunks,
            mode="overwrite" if self.overwrite else "create",
            attributes=attributes,
            limiter=self._limiter,
        )
        if isinstance(error, AlreadyExistsError):
            # A concurrent writer won the create-only race: fine if it stored this URL.
            found = await self.exists(item)
            if found is None:  # and then it was deleted again
                raise SinkError(f"{self.location(item.name)} vanished while storing") from error
            return found
        if error is not None:
            raise self._error("store", key, error) from error
        if path is not None:
            with contextlib.suppress(OSError):
                os.setxattr(path, SOURCE_XATTR, item.image_url.encode("utf-8", "surrogatepass"))
        return self.location(item.name)

    async def check(self) -> None:
        """Preflight: the bucket exists, the credentials work, the endpoint answers.

        Lists at most one object under the prefix, within ``check_timeout``.

        Raises:
            SinkError: with what is wrong (no bucket, credentials refused,
                cannot reach the endpoint); never with a secret.
        """
        path = self._local_path("")
        if path is not None:
            if not os.access(path, os.W_OK | os.X_OK):
                raise SinkError(f"cannot write to {self.base}: permission denied")
            return
        if isinstance(self.object_store, MemoryStore):
            return

        def first_page() -> None:
            with contextlib.suppress(StopIteration):
                next(iter(obstore.list(self._probe, prefix=None, chunk_size=1)))

        try:
            with anyio.fail_after(self._check_timeout):
                # A thread that outlives the timeout is left to obstore's own timeouts.
                await anyio.to_thread.run_sync(first_page, abandon_on_cancel=True)
        except TimeoutError:
            raise SinkError(
                f"cannot reach {self.base}: no answer within {self._check_timeout:g} s"
            ) from None
        except Exception as exc:
            raise self._check_error(exc) from exc

    def _check_error(self, exc: Exception) -> SinkError:
        reason = failure_reason(exc)
        endpoint = endpoint_of(exc)
        at = f" at {endpoint}" if endpoint else ""
        if "NoSuchBucket" in str(exc) or "ContainerNotFound" in str(exc):
            bucket = self.base.split("://", 1)[-1].split("/", 1)[0]
            return SinkError(f"bucket {bucket!r} does not exist{at}")
        if reason.startswith("cannot reach"):
            return SinkError(f"cannot reach {self.base}{at}: {first_line(exc)[:200]}")
        return SinkError(f"{self.base}{at}: {reason}")

    def __repr__(self) -> str:
        mode = "overwrite" if self.overwrite else "create-only"
        return f"ObjectStoreSink({self.base + self.prefix!r}, {mode})"


def _content_type(name: str) -> str:
    lower = name.lower()
    if lower.endswith((".jpg", ".jpeg")):
        return "image/jpeg"
    if lower.endswith(".webp"):
        return "image/webp"
    return "image/png" if lower.endswith(".png") else "application/octet-stream"
