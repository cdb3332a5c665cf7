"""Local items in a batch: staged just before their first POST, deleted once they are finished.

The runner asks a `Source` for the URL to submit. For a URL item that is the
URL; for a local file it is a presigned link to a copy in the staging
bucket, uploaded on the first call only (a resubmission after an expired
link reuses it) and never before a POST is really needed: an item already
stored, or whose paid links are in the journal, is never uploaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import attrs

from ._errors import FreepikError, InvalidRequestError
from ._targets import Target

if TYPE_CHECKING:
    from ._staging import StagedFile, Stager

__all__ = ["Source", "Staging", "local_problem"]

logger = logging.getLogger("freepik_bg")

# Deleting one object; a store that cannot do it in this long is not answering.
_UNSTAGE_TIMEOUT = 30.0


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def _needs_stage(path: Path) -> InvalidRequestError:
    if not path.exists():
        scheme = _SCHEME.match(str(path))
        if scheme is not None:  # data:, javascript:, mailto: ... (no file is named so)
            return InvalidRequestError(
                f"{str(path)!r} is not an http(s) URL (its scheme is {scheme.group(1)!r}) "
                "nor a local file"
            )
        return InvalidRequestError(f"{str(path)!r} is neither an http(s) URL nor a local file")
    return InvalidRequestError(
        f"{path} is a local file, and the API only fetches public URLs: pass "
        "stage='s3://bucket/prefix/' (CLI: --stage URL) to upload it for the service, "
        "or give its http(s) URL instead"
    )


def local_problem(path: Path, *, staging: bool) -> InvalidRequestError | None:
    """Why the local file ``path`` cannot be submitted, as a batch would fail it (no
    request sent), or ``None`` when it can be staged: for plans and dry runs.

    Examples:
        >>> str(local_problem(Path("javascript:void(0)"), staging=True))
        "'javascript:void(0)' is not an http(s) URL (its scheme is 'javascript') nor a local file"
    """
    if staging and path.exists():
        return None
    return _needs_stage(path)


@attrs.define(slots=True)
class Source:
    """Where the service fetches one item from: its URL, or its staged copy."""

    target: Target
    stager: Stager | None
    staged: StagedFile | None = None

    async def url(self) -> str:
        """The URL to submit; stages a local file on the first call."""
        local = self.target.local
        if local is None:
            return self.target.identity
        if self.stager is None:
            raise _needs_stage(local)
        if self.staged is None:
            # Shielded: an upload cancelled halfway would still land in the bucket
            # (its thread runs to the end) without being recorded here, and so
            # never be deleted. Finish it, record it, then honour the cancellation.
            with anyio.CancelScope(shield=True):
                staged = self.staged = await self.stager.stage(local)
            await anyio.lowlevel.checkpoint_if_cancelled()
            return staged.url
        return self.staged.url


@attrs.define(slots=True)
class Staging:
    """The batch's staging bucket, if it has one, and whether staged copies are kept."""

    stager: Stager | None = None
    keep: bool = False

    @classmethod
    def create(cls, stage: str | None, *, keep: bool = False) -> Staging:
        """Staging through the bucket prefix ``stage`` (``s3://bucket/staging/``), or none."""
        if stage is None:
            return cls()
        from ._staging import Stager  # obstore is optional

        return cls(Stager(stage), keep)

    async def check(self) -> None:
        """Before the first POST: the staging bucket works (`StagingError` if not)."""
        if self.stager is not None:
            await self.stager.check()

    @asynccontextmanager
    async def scope(self, target: Target) -> AsyncIterator[Source]:
        """One item's source; its staged copy is deleted when the item is finished."""
        source = Source(target, self.stager)
        try:
            yield source
        finally:
            staged = source.staged
            if staged is not None and self.stager is not None and not self.keep:
                # Also on a cancelled batch: a staged copy left behind is a leak of the image.
                with anyio.CancelScope(shield=True):
                    await self._unstage(self.stager, staged)

    async def _unstage(self, stager: Stager, staged: StagedFile) -> None:
        problem: object = f"no answer within {_UNSTAGE_TIMEOUT:g} s"
        with anyio.move_on_after(_UNSTAGE_TIMEOUT):
            try:
                await stager.unstage(staged)
                return
            except FreepikError as exc:
                problem = exc
        logger.warning(
            "could not delete the staged copy %s: %s; delete it by hand, or let a "
            "lifecycle rule on the staging prefix expire it",
            staged.source,
            problem,
        )
