"""What the command line shows while a batch runs: a rich bar, or plain lines."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ._errors import LinkExpiredError, SkippedError
from ._models import BatchStats, ItemResult, ProgressEvent, ProgressKind

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["Display", "make_display", "silence_stdout"]


def silence_stdout() -> None:
    """Point standard output at the null device, once its reader is gone (``| head``).

    Whatever is still buffered, and Python's own flush at exit, then go nowhere instead of
    ending the run with "Exception ignored ... BrokenPipeError" (the Python docs' advice).
    """
    # Not a real descriptor (a test's captured stdout): nothing will flush into a pipe.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


class Display(Protocol):
    """The CLI's view of a running batch.

    ``closed``: why its per-item lines could not be written (their reader is gone), or
    None; the run then sends nothing more, and says so.
    """

    closed: str | None

    def start(self, stats: BatchStats, total: int | None = None) -> None: ...
    def on_event(self, event: ProgressEvent) -> None: ...
    def item(self, item: ItemResult) -> None: ...
    def interrupted(self, *, drain: bool) -> None: ...
    def stop(self) -> None: ...
    def summary(self, counts: dict[str, int], elapsed: float, **where: str) -> None: ...


def not_attempted(item: ItemResult) -> bool:
    """Whether ``item`` was never sent: stopped before its first POST."""
    # An item interrupted with its POST on the wire counts that attempt: it may be billed.
    return isinstance(item.error, SkippedError) and item.attempts == 0


def _interrupt_message(drain: bool) -> str:
    if drain:
        return (
            "stopping: sending nothing more; finishing and storing what was already paid for. "
            "Press Ctrl-C again to abandon it (answers that arrived keep their links in the "
            "journal; a POST still waiting for its answer is lost, and may have been billed)."
        )
    return (
        "abandoning items in flight: the links of answers that arrived are in the journal; "
        "POSTs still waiting for an answer may have been billed, and a resume sends them "
        "again; rerun to resume"
    )


def _describe(item: ItemResult) -> str:
    if item.ok:
        verb = "skip" if item.skipped else "ok"
        return f"{verb:<5}{item.index:>7}  {item.image_url} -> {item.location}"
    return f"FAIL {item.index:>7}  {item.image_url}: {item.error}{_paid_note(item)}"


def _paid_note(item: ItemResult) -> str:
    # Paid for in this run, then not stored (a broken download, a full disk): the links
    # are in the command's journal, and the next step is the free rerun, not a repayment.
    if item.posted_at is None or isinstance(item.error, SkippedError | LinkExpiredError):
        return ""
    return (
        " (paid for: its links are in the journal; rerun within 5 minutes to store it "
        "without paying again)"
    )


def _rate(counts: dict[str, int], elapsed: float) -> float:
    done = counts.get("ok", 0) + counts.get("failed", 0)
    return done / elapsed if elapsed > 0 else 0.0


class PlainDisplay:
    """One line per item (unless quiet) and a summary: for logs and pipes."""

    def __init__(self, *, quiet: bool, stream: TextIO | None = None, per_item: bool = True) -> None:
        self._quiet = quiet
        self._per_item = per_item
        self._stream = stream or sys.stdout
        self._last = time.monotonic()
        self._stats: BatchStats | None = None
        self.closed: str | None = None

    def start(self, stats: BatchStats, total: int | None = None) -> None:
        self._stats = stats

    def on_event(self, event: ProgressEvent) -> None:
        pass

    def item(self, item: ItemResult) -> None:
        if not self._per_item or self.closed is not None:
            return
        if not_attempted(item):
            return  # one line in the summary says how many, and why
        if not self._quiet or not item.ok:
            self._print(_describe(item))

    def _print(self, line: str, *, keep: bool = False) -> None:
        """``line`` on the stream. Once the stream's reader is gone, per-item lines stop and
        what must be seen (``keep``: the summary) goes to stderr instead."""
        if self.closed is None:
            try:
                print(line, file=self._stream, flush=True)
                return
            except BrokenPipeError as exc:
                name = "standard output" if self._stream is sys.stdout else "the output"
                self.closed = f"{name} was closed ({exc.strerror or exc})"
                if self._stream is sys.stdout:
                    silence_stdout()
        if keep:
            print(line, file=sys.stderr, flush=True)

    def interrupted(self, *, drain: bool) -> None:
        print(_interrupt_message(drain), file=sys.stderr, flush=True)

    def stop(self) -> None:
        pass

    def summary(self, counts: dict[str, int], elapsed: float, **where: str) -> None:
        if not self._per_item and not self._quiet:
            return
        line = (
            f"done: {counts['ok']} stored, {counts['failed']} failed, "
            f"{counts['skipped']} skipped in {elapsed:.1f} s ({_rate(counts, elapsed):.1f}/s)"
        )
        self._print(line, keep=True)
        for name, value in where.items():
            self._print(f"{name}: {value}", keep=True)


class RichDisplay:
    """A live bar (done, failed, rate, ETA) and a summary table, on stderr.

    rich loads with the batch's first news (an item done, a credit spent, a retry), not
    at `start`: importing it and starting the bar is ~60 ms that the first POST would
    otherwise wait for (issue #15). The bar's clock still starts at `start`.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self._failed = 0
        self._done = 0
        self._started = time.monotonic()
        self._stats: BatchStats | None = None
        self._total: int | None = None
        self.closed: str | None = None  # on stderr: no reader of stdout to lose

    @staticmethod
    def available() -> bool:
        """Whether rich is installed (without importing it)."""
        import importlib.util

        return importlib.util.find_spec("rich") is not None

    @property
    def console(self) -> Console:
        """The rich console everything is drawn on (stderr unless given)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def _bar(self) -> Progress:
        if self._progress is not None:
            return self._progress
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]:.1f}/s"),
            TextColumn("in flight {task.fields[in_flight]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            get_time=time.monotonic,
        )
        self._task = progress.add_task(
            "removing backgrounds",
            total=self._total,
            start=False,
            failed=self._failed,
            rate=0.0,
            in_flight=0,
        )
        for task in progress.tasks:
            task.start_time = self._started  # elapsed counts from the run's start
        progress.start()
        self._progress = progress
        return progress

    def start(self, stats: BatchStats, total: int | None = None) -> None:
        self._stats = stats
        self._total = total
        self._started = time.monotonic()

    def on_event(self, event: ProgressEvent) -> None:
        if event.kind is not ProgressKind.QUEUED:
            self._bar()  # the first answer: the bar appears

    def item(self, item: ItemResult) -> None:
        progress = self._bar()
        self._done += 1
        if not item.ok and not not_attempted(item):
            self._failed += 1
            from rich.text import Text

            # Text, not markup: URLs and messages may hold brackets.
            progress.console.print(Text(_describe(item), style="red"))
        elapsed = max(time.monotonic() - self._started, 1e-9)
        progress.update(
            self._task,
            advance=1,
            failed=self._failed,
            rate=self._done / elapsed,
            in_flight=self._stats.in_flight if self._stats else 0,
        )

    def interrupted(self, *, drain: bool) -> None:
        from rich.text import Text

        self.console.print(Text(_interrupt_message(drain), style="yellow"))

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def summary(self, counts: dict[str, int], elapsed: float, **where: str) -> None:
        from rich.table import Table

        table = Table(title="freepik-bg", show_header=False)
        table.add_row("stored", f"[green]{counts['ok']}")
        table.add_row("failed", f"[red]{counts['failed']}" if counts["failed"] else "0")
        table.add_row("skipped (already done)", str(counts["skipped"]))
        table.add_row("elapsed", f"{elapsed:.1f} s")
        table.add_row("rate", f"{_rate(counts, elapsed):.1f} items/s")
        for name, value in where.items():
            table.add_row(name, value)
        self.console.print(table)


def make_display(mode: str, *, quiet: bool, stream: TextIO | None = None) -> Display:
    """``auto`` picks the bar on a terminal when rich is installed, else plain lines.

    Plain lines go to ``stream`` (stdout by default; stderr when stdout carries the report).
    """
    if mode == "none":
        return PlainDisplay(quiet=True, per_item=False, stream=stream)
    if mode in ("auto", "bar") and (mode == "bar" or sys.stderr.isatty()):
        if RichDisplay.available():
            return RichDisplay()
        if mode == "bar":
            print("rich is not installed; showing plain progress", file=sys.stderr)
    return PlainDisplay(quiet=quiet, stream=stream)
