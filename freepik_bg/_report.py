"""The CLI's JSON report: one record per item, streamed, written atomically (or to stdout)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from ._models import ItemResult
from ._sinks import file_mode

__all__ = ["ReportWriter", "check_report_path"]


def check_report_path(path: Path) -> None:
    """Refuse, before any credit is spent, a report path that cannot be written."""
    if str(path) == "-":
        return
    if path.is_dir():
        raise ValueError(
            f"--report {path} is a directory: give a file name, e.g. {path}/report.json"
        )
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--report {path}: cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--report {path}: {parent} is not writable")


class ReportWriter:
    """Streams ``{"items": [...], "summary": {...}}``; memory stays flat for millions of items.

    A file report goes to a temp file beside it, renamed into place at the
    end with the permissions ``open()`` would give; ``-`` writes to stdout.
    A write that fails (a full disk, a closed pipe) never stops the batch: the
    report is dropped, nothing is left behind, and `finish` raises the error.

    Examples:
        >>> import io, contextlib
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     report = ReportWriter(Path("-"))
        ...     report.finish({"total": 0})
        >>> out.getvalue()
        '{"items": [\\n\\n], "summary": {"total": 0}}\\n'
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp: Path | None = None
        self._error: OSError | None = None
        if str(path) == "-":
            self._fh: IO[str] = sys.stdout
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            os.fchmod(fd, file_mode())
            self._tmp = Path(tmp)
            self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self._write('{"items": [\n')
        self._first = True

    def _write(self, text: str) -> None:
        if self._error is not None:
            return
        try:
            self._fh.write(text)
        except OSError as exc:
            self._error = exc
            self.discard()

    def add(self, item: ItemResult) -> None:
        """Append one item's record."""
        if not self._first:
            self._write(",\n")
        self._first = False
        self._write(json.dumps(item.to_record(), ensure_ascii=False))

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the summary and put the report in place; the first `OSError` if it could
        not be written (no part of it is left then)."""
        self._write('\n], "summary": ' + json.dumps(summary) + "}\n")
        try:
            if self._error is None and self._tmp is None:
                self._fh.flush()
            elif self._error is None and self._tmp is not None:
                self._fh.close()
                os.replace(self._tmp, self.path)
                self._tmp = None
        except OSError as exc:
            self._error = exc
            self.discard()
        if self._error is not None:
            raise self._error

    def discard(self) -> None:
        """Drop a report that will not be finished: its temp file goes."""
        if self._tmp is not None:
            with contextlib.suppress(OSError):  # its buffer's last write, on a full disk
                self._fh.close()
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
