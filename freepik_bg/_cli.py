"""The ``freepik-bg`` command line: its parser, and the dispatch to each command.

Exit codes: 0 every item stored (or already stored), 1 some items failed,
2 a usage or configuration error, 3 stopped by an account or configuration
problem, 130 interrupted (see `freepik_bg._remove_command`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._cli_plan import add_plan_options, parse_delimiter
from ._config import API_KEY_ENV, BatchConfig, at_least, parse_seconds
from ._dask_cli import add_dask_options, run_dask_remove, wants_dask
from ._entry import owns_process, resume as resume_gc
from ._errors import ConfigurationError, FreepikError, JournalError, SinkError, StagingError

__all__ = ["build_parser", "main"]


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows a ValueError as "invalid <function name> value": show our message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _positive_seconds(text: str) -> float:
    value = parse_seconds(text)
    if value == 0:
        raise ValueError("must be more than 0 seconds")
    return value


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """One flag per `BatchConfig` field marked for the CLI, with its help and parser."""
    for field in attrs.fields(BatchConfig):
        meta = field.metadata
        if not meta["cli"]:
            continue
        flag = meta["flag"] or "--" + field.name.replace("_", "-")
        if field.default is False:
            parser.add_argument(
                flag, action="store_true", default=False, help=meta["help"], dest=field.name
            )
            continue
        kwargs: dict[str, Any] = {
            "default": field.default,
            "help": meta["help"],
            "dest": field.name,
        }
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


class _VersionAction(argparse.Action):
    """``--version``: the distribution's metadata is read only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from ._version import __version__

        parser.exit(message=f"freepik-bg {__version__}\n")


def build_parser(*, emulator_options: bool = True) -> argparse.ArgumentParser:
    """The argument parser of ``freepik-bg``.

    Without `emulator_options`, the ``emulator`` command has no options of its own:
    `main` leaves them out when the command line does not name it (they cost the
    emulator's configuration module, ~30 ms of every start-up).
    """
    parser = argparse.ArgumentParser(
        prog="freepik-bg",
        description="Remove image backgrounds in bulk with Freepik's API.",
    )
    parser.add_argument("--version", action=_VersionAction)
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
        "input",
        metavar="INPUT",
        help="a text file of URLs or local paths (one per line; # comments), a CSV/TSV file, "
        "a folder of .jpg/.png images (needs --stage), or - for stdin (a pipe path such as "
        "<(...) is read once, like -)",
    )
    remove.add_argument(
        "-o",
        "--output",
        required=True,
        help="output directory, or object storage: s3://bucket/prefix/, gs://..., az://...",
    )
    remove.add_argument("--column", help="the CSV column holding the URLs (makes INPUT a CSV)")
    remove.add_argument(
        "--name-column",
        metavar="COL",
        help="with --column: name each output after this column (a SKU), made filesystem-safe",
    )
    remove.add_argument(
        "--delimiter",
        type=_argument_type(parse_delimiter),
        help="the CSV delimiter: one character, or tab (default ',', or tab for .tsv)",
    )
    add_batch_options(remove)
    add_plan_options(remove, _argument_type(at_least(0)))
    remove.set_defaults(journal=None)
    remove.add_argument("--base-url", help="API base URL (default $FREEPIK_BASE_URL or production)")
    remove.add_argument(
        "--timeout", type=_argument_type(_positive_seconds), help="per-request timeout in seconds"
    )
    remove.add_argument(
        "--max-retries", type=_argument_type(at_least(0)), help="retries per request"
    )
    remove.add_argument(
        "--no-retry-ambiguous",
        action="store_true",
        help="never retry a POST that may have been billed",
    )
    remove.add_argument(
        "--report", type=Path, help="write per-item results as JSON here (- for stdout)"
    )
    remove.add_argument(
        "--api-key-file",
        type=Path,
        help=f"read the API key from this file instead of ${API_KEY_ENV}",
    )
    remove.add_argument(
        "--http-backend",
        choices=("httpx", "aiohttp"),
        default="httpx",
        help="what carries the requests: httpx's own pool (default), or aiohttp's "
        "(less CPU per request; needs pip install 'freepik-bg[aiohttp]')",
    )
    remove.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no ok/skip lines: only FAIL lines and the summary",
    )
    remove.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="progress display (default: a bar on a terminal, plain lines otherwise)",
    )
    remove.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    add_dask_options(remove)

    emulator = commands.add_parser(
        "emulator",
        help="run the local Freepik emulator (for tests and demos)",
        description="Serve a local emulator of the API on loopback; prints its base URL and key.",
    )
    if emulator_options:
        from .testing._cli import add_arguments as add_emulator_arguments

        add_emulator_arguments(emulator)

    demo = commands.add_parser(
        "demo", help="run a batch on the local emulator and show the cutouts"
    )
    demo.add_argument(
        "-o", "--output", type=Path, default=Path("freepik-bg-demo"), help="where to write"
    )
    demo.add_argument("--concurrency", type=_argument_type(at_least(1)), default=8)
    return parser


def _run_emulator(args: argparse.Namespace) -> int:
    from ._remove_command import UsageError
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
    from ._remove_command import UsageError

    try:
        from ._demo import run_demo
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UsageError(
            f"the demo needs the 'emulator' extra: pip install 'freepik-bg[emulator]' ({exc})"
        ) from None
    return run_demo(args.output, concurrency=args.concurrency)


def _import_http_stack() -> None:
    """Import httpx and httpcore without what this process never uses (~0.2 s of start-up).

    httpx imports its own command line (``httpx._main``: rich, click, pygments) and
    httpcore imports trio when it is installed, to support running under it. The
    ``freepik-bg`` process runs on asyncio (``anyio.run``) and has no use for either:
    a module set to None in `sys.modules` cannot be imported, and httpx and httpcore
    fall back to ``httpx.main`` as a stub and to no trio support. Only this process does
    this, and only for these two imports; the SDK imported by an application does not.
    """
    if "httpx" in sys.modules or "httpcore" in sys.modules:
        return  # imported already (the tests' own process): nothing to save
    blocked = [name for name in ("httpx._main", "trio") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import httpcore  # noqa: F401
        import httpx  # noqa: F401
    finally:
        for name in blocked:
            del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``freepik-bg``; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(emulator_options="emulator" in arguments)
    args = parser.parse_args(arguments)  # --help and --version exit here, before the SDK loads
    # The SDK (httpx, anyio) only now: `freepik-bg --help` starts without it.
    _import_http_stack()
    import anyio

    from ._cli_inputs import check_own_files
    from ._remove_command import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_USAGE,
        UsageError,
        run_remove,
        stopped,
    )

    resume_gc()  # the SDK is loaded: the collector, if the entry point paused it, is back on

    logging.basicConfig(
        level=logging.WARNING - 10 * min(getattr(args, "verbose", 0), 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "verbose", 0) < 2:
        # httpx logs every request at INFO; that drowns a bulk run.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if args.command == "remove":
            try:
                config = batch_config(args)
            except ValueError as exc:  # options that do not go together (--margin without --trim)
                raise UsageError(str(exc)) from None
            if wants_dask(args):
                check_own_files(args, None)  # no --journal on Dask: each partition has its own
                try:
                    return run_dask_remove(args, arguments, config)
                except JournalError as exc:
                    # From a partition, while others may have spent credits: a stopped run,
                    # not the usage error below ("nothing was spent").
                    return stopped(str(exc))
            if owns_process():
                # tenacity, imported at a batch's first retry, imports tornado when it is
                # installed (Dask brings it), to retry tornado coroutines: ~30 ms of CPU
                # mid-run (in a worker thread, but under the GIL) for nothing this process
                # runs. Only the command's own process, and not on Dask (above):
                # distributed runs on tornado.
                sys.modules.setdefault("tornado", None)  # type: ignore[arg-type]
            return anyio.run(run_remove, args, arguments, config)
        if args.command == "emulator":
            return _run_emulator(args)
        return _run_demo(args)
    except (UsageError, ConfigurationError, JournalError, SinkError, StagingError) as exc:
        # All raised before the first POST: nothing was spent.
        print(f"freepik-bg: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FreepikError as exc:
        print(f"freepik-bg: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("freepik-bg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
