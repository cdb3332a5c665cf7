"""The ``freepik-bg`` command line.

Exit codes: 0 when every item succeeded (or was already done), 1 when some
failed, 2 for a usage or configuration error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, TextIO

import anyio
import attrs

from ._config import API_KEY_ENV, BatchConfig, at_least, resolve_api_key
from ._display import make_display
from ._errors import ConfigurationError, FreepikError
from ._models import ItemResult
from ._sync import batch_client
from ._version import __version__

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_JOURNAL_NAME = ".freepik-bg-journal.jsonl"


class UsageError(Exception):
    """A problem the user fixes by changing the command or the environment."""


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows a ValueError as "invalid <function name> value": show our message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"must be a positive number, got {text}")
    return value


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `BatchConfig` field marked for the CLI, with its help and parser."""
    for field in attrs.fields(BatchConfig):
        meta = field.metadata
        if not meta["cli"]:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.default is False:
            parser.add_argument(flag, action="store_true", default=False, help=meta["help"])
            continue
        kwargs: dict[str, Any] = {"default": field.default, "help": meta["help"]}
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["parse"] is not None:
            kwargs["type"] = _argument_type(meta["parse"])
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        parser.add_argument(flag, **kwargs)


def batch_config(args: argparse.Namespace, **overrides: Any) -> BatchConfig:
    """The `BatchConfig` the parsed flags describe."""
    values = {
        field.name: getattr(args, field.name)
        for field in attrs.fields(BatchConfig)
        if field.metadata["cli"]
    }
    return BatchConfig(**{**values, **overrides})


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``freepik-bg``."""
    parser = argparse.ArgumentParser(
        prog="freepik-bg",
        description="Remove image backgrounds in bulk with Freepik's API.",
    )
    parser.add_argument("--version", action="version", version=f"freepik-bg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    remove = commands.add_parser(
        "remove",
        help="remove the backgrounds of a list of image URLs",
        description=(
            "Submit every URL in INPUT and store each cutout in the output directory. "
            f"The API key comes from ${API_KEY_ENV} or --api-key-file. "
            "Runs are resumable: rerun the same command after an interruption."
        ),
    )
    remove.add_argument(
        "input", metavar="INPUT", help="a text file of URLs (one per line), a CSV file, or -"
    )
    remove.add_argument("-o", "--output", required=True, type=Path, help="output directory")
    remove.add_argument("--column", help="the CSV column holding the URLs (makes INPUT a CSV)")
    add_batch_options(remove)
    remove.set_defaults(journal=None)
    remove.add_argument("--base-url", help="API base URL (default $FREEPIK_BASE_URL or production)")
    remove.add_argument(
        "--timeout", type=_argument_type(_positive_float), help="per-request timeout in seconds"
    )
    remove.add_argument(
        "--max-retries", type=_argument_type(at_least(0)), help="retries per request"
    )
    remove.add_argument(
        "--no-retry-ambiguous",
        action="store_true",
        help="never retry a POST that may have been billed",
    )
    remove.add_argument("--report", type=Path, help="write per-item results as JSON here")
    remove.add_argument(
        "--api-key-file",
        type=Path,
        help=f"read the API key from this file instead of ${API_KEY_ENV}",
    )
    remove.add_argument("-q", "--quiet", action="store_true", help="no per-item lines")
    remove.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="progress display (default: a bar on a terminal, plain lines otherwise)",
    )
    remove.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")

    emulator = commands.add_parser(
        "emulator",
        help="run the local Freepik emulator (for tests and demos)",
        description="Serve a local emulator of the API on loopback; prints its base URL and key.",
    )
    try:
        from .testing import add_arguments as add_emulator_arguments
    except ImportError:  # pragma: no cover - the testing package always imports
        pass
    else:
        add_emulator_arguments(emulator)

    demo = commands.add_parser(
        "demo", help="run a batch on the local emulator and show the cutouts"
    )
    demo.add_argument(
        "-o", "--output", type=Path, default=Path("freepik-bg-demo"), help="where to write"
    )
    demo.add_argument("--concurrency", type=_argument_type(at_least(1)), default=8)
    return parser


# -- input ---------------------------------------------------------------------


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        text = line.strip()
        if text and not text.startswith("#"):
            yield text


def _csv_column(stream: TextIO, column: str) -> Iterator[str]:
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or column not in reader.fieldnames:
        found = ", ".join(reader.fieldnames or []) or "no header"
        raise UsageError(f"CSV has no column {column!r} (found: {found})")
    for row in reader:
        value = (row.get(column) or "").strip()
        if value:
            yield value


def open_input(path: str, column: str | None, stack: ExitStack) -> Iterator[str]:
    """A lazy iterator of URLs from a file or stdin."""
    if path == "-":
        stream: TextIO = sys.stdin
    else:
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"input file not found: {path}")
        if file.suffix.lower() == ".csv" and column is None:
            raise UsageError(f"{path} looks like a CSV file: say which column with --column NAME")
        try:
            stream = stack.enter_context(file.open(encoding="utf-8-sig", newline=""))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if column is not None:
        iterator = _csv_column(stream, column)
        # Read the header now, so a wrong column is a usage error before any request.
        first = next(iterator, None)

        def chained() -> Iterator[str]:
            if first is not None:
                yield first
            yield from iterator

        return chained()
    return _lines(stream)


def count_urls(path: str, column: str | None) -> int | None:
    """How many URLs a file holds (a cheap streaming pass), for the ETA; None for stdin."""
    if path == "-":
        return None
    with ExitStack() as stack:
        try:
            return sum(1 for _ in open_input(path, column, stack))
        except (UsageError, OSError, UnicodeDecodeError, csv.Error):
            return None


def read_api_key(key_file: Path | None) -> str:
    """The key from ``--api-key-file`` or the environment, checked; never printed."""
    if key_file is None:
        return resolve_api_key(None)
    try:
        lines = key_file.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read --api-key-file {key_file}: {reason}") from None
    if not lines or not lines[0].strip():
        raise UsageError(f"--api-key-file {key_file} is empty")
    return resolve_api_key(lines[0])


# -- report --------------------------------------------------------------------


class ReportWriter:
    """Streams per-item JSON to a temp file, renamed into place at the end.

    The report is ``{"items": [...], "summary": {...}}``; streaming keeps
    memory flat for million-item runs.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        self._tmp = Path(tmp)
        self._fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        self._fh.write('{"items": [\n')
        self._first = True

    def add(self, item: ItemResult) -> None:
        if not self._first:
            self._fh.write(",\n")
        self._first = False
        self._fh.write(json.dumps(item.to_record(), ensure_ascii=False))

    def finish(self, summary: dict[str, Any]) -> None:
        self._fh.write('\n], "summary": ' + json.dumps(summary) + "}\n")
        self._fh.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


# -- commands ------------------------------------------------------------------


def _resume_command(argv: Sequence[str]) -> str:
    return shlex.join(["freepik-bg", *argv])


async def _run_remove(args: argparse.Namespace, argv: Sequence[str]) -> int:
    api_key = read_api_key(args.api_key_file)
    journal = Path(args.journal) if args.journal else args.output / DEFAULT_JOURNAL_NAME
    with ExitStack() as stack:
        urls = open_input(args.input, args.column, stack)
        total = count_urls(args.input, args.column)
        display = make_display(args.progress, quiet=args.quiet)
        config = batch_config(args, journal=journal, progress=display.on_event)
        client = batch_client(
            config,
            api_key=api_key,
            base_url=args.base_url,
            timeout=args.timeout,
            max_retries=args.max_retries,
            retry_ambiguous=not args.no_retry_ambiguous,
        )
        report = ReportWriter(args.report) if args.report else None
        interrupted = False
        counts = {"ok": 0, "failed": 0, "skipped": 0}
        start = anyio.current_time()
        try:
            async with client, anyio.create_task_group() as tg:

                async def watch_signals() -> None:
                    nonlocal interrupted
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            interrupted = True
                            display.interrupted()
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch_signals)
                async with client.batch(urls, args.output, config) as results:
                    display.start(results.stats, total)
                    async for item in results:
                        counts[item.status] += 1
                        display.item(item)
                        if report is not None:
                            report.add(item)
                tg.cancel_scope.cancel()
        finally:
            display.stop()
        elapsed = anyio.current_time() - start
        summary = {**counts, "total": sum(counts.values()), "elapsed_seconds": round(elapsed, 3)}
        summary["interrupted"] = interrupted
        if report is not None:
            report.finish(summary)
        display.summary(counts, elapsed, output=str(args.output), journal=str(journal))
        if interrupted:
            print(
                f"Interrupted. Resume with:\n  {_resume_command(argv)}",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        return EXIT_FAILED if counts["failed"] else EXIT_OK


def _run_emulator(args: argparse.Namespace) -> int:
    from .testing import run as run_emulator

    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"the emulator needs the 'emulator' extra: pip install 'freepik-bg[emulator]' ({exc})"
        ) from None
    return run_emulator(args)


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from ._demo import run_demo
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UsageError(
            f"the demo needs the 'emulator' extra: pip install 'freepik-bg[emulator]' ({exc})"
        ) from None
    return run_demo(args.output, concurrency=args.concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``freepik-bg``; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(arguments)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(getattr(args, "verbose", 0), 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "verbose", 0) < 2:
        # httpx logs every request at INFO; that drowns a bulk run.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if args.command == "remove":
            return anyio.run(_run_remove, args, arguments)
        if args.command == "emulator":
            return _run_emulator(args)
        return _run_demo(args)
    except (UsageError, ConfigurationError) as exc:
        print(f"freepik-bg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FreepikError as exc:
        print(f"freepik-bg: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("freepik-bg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
