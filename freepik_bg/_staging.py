"""Local files in: checked here, staged in a bucket, handed to the service as presigned URLs.

The API only takes a public ``image_url``. A `Stager` uploads each local
image under a content-addressed key and presigns a GET link valid long enough
for the service to fetch it; `walk_images` and
`relative_output_name` turn a folder tree into inputs and output names.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import anyio.to_thread
import attrs

from ._errors import ConfigurationError, InvalidRequestError, SinkError, StagingError
from ._sinks import PART_BYTES, fit_name
from ._stores import failure_reason, open_store, run_blocking, storage_scheme

try:
    import obstore
    from obstore.exceptions import AlreadyExistsError
    from obstore.store import AzureStore, GCSStore, S3Store
except ImportError:  # the ``storage`` extra is optional; open_store says how to get it
    pass

__all__ = [
    "DEFAULT_STAGE_EXPIRY",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
    "StagedFile",
    "Stager",
    "StagingError",
    "read_image",
    "relative_output_name",
    "walk_images",
]

logger = logging.getLogger("freepik_bg")

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The service's limit on a source image: 20 MB."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_STAGE_EXPIRY = timedelta(minutes=15)
"""Long enough for a POST that waits out rate limits and retries; short enough to leak little."""
# SigV4 presigned URLs cannot live longer than seven days.
_MAX_EXPIRY = timedelta(days=7)
_SIGNATURES = {b"\xff\xd8\xff": ("image/jpeg", ".jpg"), b"\x89PNG\r\n\x1a\n": ("image/png", ".png")}
_LOOKALIKES = {b"%PDF": "a PDF", b"GIF8": "a GIF", b"RIFF": "a RIFF (WebP?)", b"<": "text/HTML"}
_UNSAFE_IN_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


@attrs.frozen
class StagedFile:
    """A local image uploaded for the service to fetch.

    Attributes:
        url: the presigned GET URL to submit as ``image_url``.
        key: the object's key in the bucket (content-addressed).
        path: the local file.
        source: the object's unsigned URL (``s3://bucket/staging/<sha256>.jpg``):
            stable across runs, unlike ``url``, so a good identity for outputs.
    """

    url: str
    key: str
    path: Path
    source: str


def read_image(path: Path) -> tuple[bytes, str, str]:
    """The bytes of a local JPEG/PNG, its content type and extension, or a clear refusal.

    Raises:
        InvalidRequestError: missing, not a regular file, empty, over 20 MB,
            or not a JPEG/PNG by its magic bytes.

    Examples:
        >>> read_image(Path("notes.txt"))  # doctest: +SKIP
        Traceback (most recent call last):
        InvalidRequestError: notes.txt is not a JPEG or PNG image
    """
    try:
        # stat before open: opening a FIFO would block until someone writes to it.
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise InvalidRequestError(f"{path} is not a regular file")
        if info.st_size > MAX_IMAGE_BYTES:
            raise InvalidRequestError(_too_large(path, info.st_size))
        with path.open("rb") as fh:
            # One byte more than allowed: a file that grew since stat is caught too.
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise InvalidRequestError(f"{path} is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequestError(_too_large(path, len(data)))
    for magic, (content_type, extension) in _SIGNATURES.items():
        if data.startswith(magic):
            return data, content_type, extension
    looks = next((what for magic, what in _LOOKALIKES.items() if data.startswith(magic)), None)
    hint = f" (it looks like {looks})" if looks else ""
    raise InvalidRequestError(f"{path} is not a JPEG or PNG image{hint}")


def _load(path: Path) -> tuple[bytes, str, str, str]:
    data, content_type, extension = read_image(path)
    return data, content_type, extension, hashlib.sha256(data).hexdigest()


def _too_large(path: Path, size: int) -> str:
    return f"{path} is {size} bytes; the service takes images up to 20 MB ({MAX_IMAGE_BYTES} bytes)"


def _expiry(expires: timedelta | float) -> timedelta:
    delta = expires if isinstance(expires, timedelta) else timedelta(seconds=expires)
    if not timedelta(seconds=1) <= delta <= _MAX_EXPIRY:
        raise ConfigurationError(f"staging links must live 1 s to 7 days, not {delta}")
    return delta


class Stager:
    """Uploads local images to a bucket and presigns GET links for the service.

    Keys are the SHA-256 of the bytes plus the file's extension, under the
    URL's prefix: the same image is uploaded once, and a rerun finds it there.
    Staging the same bytes twice needs two `unstage` calls before the
    object goes. Works under asyncio and trio.

    Args:
        url: where to stage: ``s3://bucket/prefix/``, ``gs://...`` or ``az://...``.
            Credentials come from the environment, as for output URLs.
        expires: how long each link is valid (a ``timedelta`` or seconds).

    Examples:
        >>> stager = Stager("s3://my-bucket/staging/")  # doctest: +SKIP
        >>> staged = await stager.stage(Path("photos/red.jpg"))  # doctest: +SKIP
        >>> cutout = await client.remove_background(staged.url)  # doctest: +SKIP
        >>> await stager.unstage(staged)  # doctest: +SKIP
    """

    def __init__(self, url: str, *, expires: timedelta | float = DEFAULT_STAGE_EXPIRY) -> None:
        if storage_scheme(url) in ("file", "memory"):
            raise ConfigurationError(
                f"staging needs a bucket the service can fetch from (s3://, gs:// or az://), "
                f"not {url.split('://')[0]}://"
            )
        self.expires = _expiry(expires)
        self._store, self.base = open_store(url)
        self._prefix = urlsplit(self.base).path.lstrip("/")
        # Stagings of the same bytes share one object: delete it with the last one.
        self._refs: dict[str, int] = {}

    async def stage(self, path: Path) -> StagedFile:
        """Check ``path``, upload it unless already there, and presign a GET link.

        Raises:
            InvalidRequestError: the file is unreadable, empty, over 20 MB or
                not a JPEG/PNG; nothing is uploaded.
            StagingError: the bucket refused the upload or the signature.
        """
        path = Path(path)
        # Reading and hashing 20 MB would hold up the event loop: both go to a thread.
        data, content_type, extension, digest = await anyio.to_thread.run_sync(_load, path)
        suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else extension
        name = digest + suffix
        self._refs[name] = self._refs.get(name, 0) + 1
        try:
            await self._upload(name, data, content_type)
            url = await self._sign(name)
        except BaseException:
            self._release(name)
            raise
        return StagedFile(url=url, key=self._prefix + name, path=path, source=self.base + name)

    async def _upload(self, name: str, data: bytes, content_type: str) -> None:
        try:
            await run_blocking(obstore.head, self._store, name)
            return  # content-addressed: what is there is this image
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error("look up", name, exc) from exc
        try:
            attributes = {"Content-Type": content_type}
            await run_blocking(
                obstore.put, self._store, name, data, mode="create", attributes=attributes
            )
        except AlreadyExistsError:
            pass  # staged meanwhile by another run: the same bytes
        except Exception as exc:
            raise self._error("upload", name, exc) from exc

    async def _sign(self, name: str) -> str:
        assert isinstance(self._store, (S3Store, GCSStore, AzureStore))
        try:
            return await run_blocking(obstore.sign, self._store, "GET", name, self.expires)
        except Exception as exc:
            raise self._error("presign", name, exc) from exc

    def _release(self, name: str) -> bool:
        """Drop one reference; whether it was the last."""
        count = self._refs.pop(name, 0) - 1
        if count > 0:
            self._refs[name] = count
        return count <= 0

    async def unstage(self, staged: StagedFile) -> None:
        """Delete the staged object (once no other staging of the same bytes needs it).

        A missing object is fine: it is what unstaging wants.

        Raises:
            StagingError: the bucket refused the delete.
        """
        name = staged.key.removeprefix(self._prefix)
        if not self._release(name):
            return
        try:
            await run_blocking(obstore.delete, self._store, name)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error("delete", name, exc) from exc

    async def check(self) -> None:
        """Before the first POST: the bucket exists, answers and takes these credentials.

        Raises:
            StagingError: what is wrong with the staging bucket; no credit spent.
        """
        from ._storage import sink_from_url  # an output's probe is the same request

        try:
            await sink_from_url(self.base, overwrite=False).check()
        except SinkError as exc:
            raise StagingError(f"the staging bucket: {exc}") from exc

    def _error(self, action: str, name: str, exc: BaseException) -> StagingError:
        return StagingError(f"cannot {action} {self.base}{name}: {failure_reason(exc)}")

    def __repr__(self) -> str:
        return f"Stager({self.base!r}, expires={self.expires})"


def walk_images(root: str | os.PathLike[str]) -> Iterator[Path]:
    """The JPEG/PNG files under ``root`` by extension, recursively, in a stable order.

    Each folder's files come in name order, then its subfolders. Hidden files
    and folders (names starting with ``.``) are left out. Symlinks are
    followed, but a folder is walked once even if links lead back to it (so a
    link loop ends), and unreadable folders are skipped with a warning. Names
    that are not UTF-8 come through as `os.fsdecode` gives them.

    Examples:
        >>> [p.name for p in walk_images("photos")]  # doctest: +SKIP
        ['cover.PNG', 'red.jpg', 'blue.jpeg']
    """
    top = Path(root)
    if top.is_file():
        if top.suffix.lower() in IMAGE_SUFFIXES:
            yield top
        return
    seen: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            logger.warning("skipping %s: %s", folder, exc.strerror or exc)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden: .git, .DS_Store, a tool's cache, our own journal
            try:
                if entry.is_dir():
                    subfolders.append(Path(entry.path))
                elif entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES):
                    yield Path(entry.path)
            except OSError:  # a link to itself (ELOOP) and the like: not an image
                continue
        stack.extend(reversed(subfolders))


def relative_output_name(
    path: str | os.PathLike[str], root: str | os.PathLike[str], suffix: str = ".png"
) -> str:
    """The output name for ``path`` that keeps its folders below ``root``.

    Separated by ``/``, with ``suffix`` for the extension; never absolute, never
    ``..``. Bytes that are not UTF-8 are percent-encoded, control characters and
    backslashes replaced by ``_``.

    Raises:
        ValueError: ``path`` is not inside ``root``.

    Examples:
        >>> relative_output_name("photos/shoes/red.jpg", "photos")
        'shoes/red.png'
    """
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        raise ValueError(f"{path} is not inside {root}") from None
    parts = relative.parts
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"{path} does not name a file inside {root}")
    *folders, filename = (_safe_part(part) for part in parts)
    # A name that fits a filesystem as an input may not as an output: percent-encoding
    # grows it, and the rendition suffix (".preview.png") is longer than ".jpg".
    folders = [fit_name(folder, PART_BYTES) for folder in folders]
    return "/".join([*folders, fit_name(Path(filename).stem) + suffix])


def _safe_part(part: str) -> str:
    raw = os.fsencode(part)
    pieces = []
    while raw:
        try:
            pieces.append(raw.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            pieces.append(raw[: exc.start].decode("utf-8"))
            pieces.append("".join(f"%{byte:02X}" for byte in raw[exc.start : exc.end]))
            raw = raw[exc.end :]
    return _UNSAFE_IN_NAME.sub("_", "".join(pieces))
