"""Several renditions of one cutout from one POST: which are stored, which are missing.

One POST answers with links to every rendition (the full-resolution cutout,
the preview, the source), so a batch asked for several downloads each of
them from the same answer, into its own output. What is already stored, per
rendition, comes from the journal (no request) or else the sink's ``exists``;
a rerun that adds a rendition downloads only what is missing, from the links
the journal kept, while they live. Once they have expired, getting the
missing rendition costs another credit, which only ``repay_missing_renditions``
allows: `Renditions.assess` is where the runner and the dry run learn that.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import attrs

from ._dedupe import Duplicates
from ._errors import (
    FreepikError,
    InvalidRequestError,
    LinkExpiredError,
    OutputConflictError,
    OutputNameError,
    SinkError,
)
from ._journal import Journal
from ._models import SIZES, Cutout, Size
from ._output_stage import OutputStage
from ._sinks import DirectorySink, Sink, SinkItem
from ._transform_options import TransformOptions

if TYPE_CHECKING:  # _targets needs the configuration, which needs this module
    from ._targets import Target

__all__ = [
    "REPAY_FLAG",
    "Assessment",
    "Renditions",
    "repay_needed",
]

REPAY_FLAG = "repay_missing_renditions=True (--repay-missing-renditions)"

T = TypeVar("T")


def repay_needed(
    url: str, missing: Sequence[Size], *, cause: BaseException | None = None
) -> LinkExpiredError:
    """The per-item error when only a new POST could store the missing renditions."""
    error = LinkExpiredError(
        f"{', '.join(missing)} of {url} not stored, and the links paid for by an earlier "
        f"run have expired: storing it costs one more credit; pass {REPAY_FLAG} to pay it",
        status_code=getattr(cause, "status_code", None),
    )
    error.__cause__ = cause
    return error


def sink_failure(action: str, item: SinkItem, exc: OSError) -> FreepikError:
    """The typed error for a sink's OSError: a name too long fails its item alone.

    Any other (a full disk, permissions) is a `SinkError`, which stops the batch:
    every later item would fail the same way.
    """
    if exc.errno == errno.ENAMETOOLONG:
        return OutputNameError(
            f"{action} {item.name} failed: the name is too long for the destination "
            f"({exc.strerror}); give it a shorter name, or choose a shorter output folder"
        )
    return SinkError(f"{action} {item.name} failed: {exc!r}")


@attrs.frozen(slots=True)
class Assessment:
    """What one URL needs, before anything is sent.

    Attributes:
        stored: the asked-for renditions already stored, by size, with where.
        missing: the asked-for renditions still to store, in the asked order.
        links: live links paid for by an earlier run: the missing renditions
            are downloaded from them, with no POST.
        paid_before: an earlier run stored some rendition of this URL, so a
            new POST would pay for it a second time.
    """

    stored: dict[Size, str]
    missing: tuple[Size, ...]
    links: Cutout | None = None
    paid_before: bool = False

    @property
    def needs_post(self) -> bool:
        """Whether storing what is missing needs a POST (a credit)."""
        return bool(self.missing) and self.links is None


@attrs.frozen(slots=True)
class Renditions:
    """The asked-for renditions of a batch, and where each of an item's goes."""

    sink: Sink
    sizes: tuple[Size, ...]
    journal: Journal | None = None
    overwrite: bool = False
    output: OutputStage = attrs.field(factory=lambda: OutputStage(TransformOptions()))

    def item(self, index: int, target: Target, size: Size) -> SinkItem:
        """What the sink is told about ``target``'s ``size`` rendition (no answer yet)."""
        return SinkItem(
            index=index,
            image_url=target.identity,
            name=self.output.name(target.output(size)),
            size=size,
        )

    def items(self, index: int, target: Target) -> dict[Size, SinkItem]:
        """What the sink is told about each asked-for rendition of ``target``, by size.

        Computed once per item: a name costs a hash and a URL parse.
        """
        return {size: self.item(index, target, size) for size in self.sizes}

    def misnamed(
        self, target: Target, items: dict[Size, SinkItem], duplicates: Duplicates
    ) -> FreepikError | None:
        """Why ``target``'s chosen names cannot be used: taken, or its own input file.

        ``items``: what `items` returned for it; every rendition's final name is
        claimed, before the POST, so that no paid output overwrites another.
        """
        if target.stem is None:
            return None
        index = next(iter(items.values())).index
        taken = duplicates.claim_names(
            (item.name for item in items.values()), target.identity, index
        )
        if taken is not None:
            other, name = taken
            return OutputConflictError(
                f"item {other} is stored under the same name {name!r}: names must be unique "
                "(a name plus a rendition's suffix counts: 'x' with preview and 'x.preview' "
                "clash); give one of them another name"
            )
        if target.local is not None and isinstance(self.sink, DirectorySink):
            for item in items.values():
                path = self.sink.path_for(item)
                if path.resolve() == target.local.resolve():
                    return InvalidRequestError(
                        f"the output {path} would replace the input itself; choose another output"
                    )
        return None

    def location(self, item: SinkItem) -> str:
        """Where ``item`` is (or would be) stored, without asking the sink."""
        if isinstance(self.sink, DirectorySink):
            return str(self.sink.path_for(item))
        # An object store names its objects by URL (s3://bucket/prefix/name), as its
        # store() does: a skipped item's location must read the same as a stored one's.
        located = getattr(self.sink, "location", None)
        return str(located(item.name)) if callable(located) else item.name

    async def assess(
        self, index: int, target: Target, items: dict[Size, SinkItem] | None = None
    ) -> Assessment:
        """Which renditions of ``target`` are stored, which are missing, and from what links.

        ``items``: what `items` returned for it, if the caller has it already.
        Raises the sink's `FreepikError` (an `OutputConflictError`, ...).
        """
        journal, url, name = self.journal, target.identity, self.output.journal_name(target.stem)
        links = journal.live_cutout(url) if journal is not None else None
        if self.overwrite:
            if isinstance(self.sink, DirectorySink):
                # Overwriting replaces files, not a directory at the name: refused now,
                # not after the credit (exists() is not asked: it would skip the file).
                for item in (items or self.items(index, target)).values():
                    await self._checked(self.sink.check_replaceable, item)
            return Assessment(stored={}, missing=self.sizes, links=links)
        stored: dict[Size, str] = {}
        if items is None:
            items = self.items(index, target)
        for size in self.sizes:
            item = items[size]
            if journal is not None and journal.is_stored(url, size, name):
                # The journal is enough: no need to ask the sink (a request, for object storage).
                stored[size] = self.location(item)
                continue
            location = await self._checked(self.sink.exists, item)
            if location is not None:
                stored[size] = location
        missing = tuple(size for size in self.sizes if size not in stored)
        paid_before = bool(stored) or (
            journal is not None
            and any(journal.is_stored(url, size, n) for size in SIZES for n in {name, target.stem})
        )
        return Assessment(stored=stored, missing=missing, links=links, paid_before=paid_before)

    @staticmethod
    async def _checked(check: Callable[[SinkItem], Awaitable[T]], item: SinkItem) -> T:
        """``check(item)``, a sink's lookup before the POST, with its failures typed."""
        try:
            return await check(item)
        except FreepikError:
            raise  # typed already (an OutputConflictError, a SinkError)
        except OSError as exc:  # a sink's own OSError: typed, never a crash of the batch
            raise sink_failure("checking", item, exc) from exc
        except Exception as exc:
            # As for store: a typed failure that stops the batch (every item would
            # fail the same way), the sink's exception its cause.
            raise SinkError(f"checking {item.name} failed: {exc!r}") from exc

    def storer(self, item: SinkItem) -> Callable[[AsyncIterator[bytes]], Awaitable[str]]:
        """The consumer that streams one rendition's bytes into the sink."""

        async def store(chunks: AsyncIterator[bytes]) -> str:
            try:
                return await self.output.store(self.sink, item, chunks)
            except FreepikError:
                raise  # a broken transfer is retried by download_with; a TransformError is not
            except OSError as exc:
                raise sink_failure("storing", item, exc) from exc
            except Exception as exc:
                # A typed failure of this item (which stops the batch), not a crash.
                raise SinkError(f"storing {item.name} failed: {exc!r}") from exc

        return store
