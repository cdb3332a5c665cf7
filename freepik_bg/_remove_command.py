"""``freepik-bg remove``: checks before any credit, the batch, signals that drain, the report.

Exit codes: 0 every item stored (or already stored), 1 some items failed,
2 a usage or configuration error (nothing was sent), 3 the batch was stopped
by an account or configuration problem (a refused key, no credits, a wrong
base URL, an unreachable API, a destination that cannot be written, a closed
standard output), 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import attrs

from ._batch import BatchResults, make_sink, raise_single
from ._cli_inputs import Input, UsageError, check_own_files, open_input, open_stream, streamed
from ._cli_plan import confirm_spending, dry_run
from ._config import API_KEY_ENV, BatchConfig, resolve_api_key
from ._destination_lock import DestinationBusy, lock_destination, release
from ._display import Display, make_display, not_attempted, silence_stdout
from ._errors import JournalError
from ._journal import Journal
from ._journal_reserve import NO_SPACE
from ._report import ReportWriter, check_report_path
from ._sync import batch_client
from ._urls import is_storage_url

if TYPE_CHECKING:
    from ._client import AsyncClient

if sys.version_info < (3, 11):  # pragma: no cover - anyio installs the backport there
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "DEFAULT_JOURNAL_NAME",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "UsageError",
    "lock_output",
    "print_dry_run",
    "read_api_key",
    "run_remove",
    "stopped",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_JOURNAL_NAME = ".freepik-bg-journal.jsonl"


def read_api_key(key_file: Path | None) -> str:
    """The key from ``--api-key-file`` or the environment, checked; never printed."""
    if key_file is None:
        if not os.environ.get(API_KEY_ENV, "").strip():
            raise UsageError(f"no API key: set {API_KEY_ENV} or pass --api-key-file FILE")
        return resolve_api_key(None)
    try:
        # utf-8-sig: a key saved by Windows Notepad starts with a byte-order mark.
        lines = key_file.read_text(encoding="utf-8-sig").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read --api-key-file {key_file}: {reason}") from None
    if not lines or not lines[0].strip():
        raise UsageError(f"--api-key-file {key_file} is empty")
    return resolve_api_key(lines[0])


def _resume_command(argv: Sequence[str]) -> str:
    return shlex.join(["freepik-bg", *argv])


@attrs.define(slots=True)
class _Tally:
    """What the run did, for the summary, the report and the exit code."""

    counts: dict[str, int] = attrs.field(factory=lambda: {"ok": 0, "failed": 0, "skipped": 0})
    not_attempted: int = 0
    duplicates: int = 0
    signals: int = 0

    def add(self, item_status: str, *, not_attempted: bool, duplicate: bool) -> None:
        self.counts[item_status] += 1
        self.not_attempted += not_attempted
        self.duplicates += duplicate


async def _watch_signals(results: BatchResults, display: Display, tally: _Tally) -> None:
    # First signal: send nothing more, finish and store what was paid for.
    # Second: abandon what is in flight (its links are in the journal).
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            tally.signals += 1
            if tally.signals == 1:
                display.interrupted(drain=True)
                results.stop()
            else:
                display.interrupted(drain=False)
                results.abort()
                return


def _journal_path(args: argparse.Namespace) -> Path:
    if args.journal:
        return Path(args.journal)
    if is_storage_url(args.output):
        # Outputs in a bucket: the journal stays here, one per destination.
        digest = hashlib.sha256(args.output.encode()).hexdigest()[:12]
        return Path(DEFAULT_JOURNAL_NAME.replace(".jsonl", f".{digest}.jsonl"))
    return Path(args.output) / DEFAULT_JOURNAL_NAME


def lock_output(output: str) -> IO[bytes] | None:
    """The run's lock on its destination (see `_destination_lock`), for the plain path
    and Dask alike: a bucket's journal lives elsewhere, a folder may be given another
    ``--journal``, and Dask keeps one journal per partition; none of those locks the
    destination itself.

    Raises:
        UsageError: another run on this machine is writing there; nothing was sent.
    """
    key = output if is_storage_url(output) else str(Path(output).resolve())
    try:
        return lock_destination(key)
    except DestinationBusy:
        raise UsageError(
            f"another run on this machine is writing to {output}: wait for it to finish "
            "(two runs into one destination would each pay for the same images)"
        ) from None


def _open_journal(args: argparse.Namespace) -> Journal:
    path = _journal_path(args)
    journal = Journal(path)
    journal.open()  # takes the run's lock: a second run into the same folder is refused here
    return journal


def _checks(config: BatchConfig) -> dict[str, Any]:
    """What the scan of INPUT needs to compare outputs by their final names."""
    from ._output_stage import OutputStage

    rename = OutputStage(config.transform_options).name
    return {"stage": config.stage, "sizes": config.sizes, "rename": rename}


async def _dry_run(args: argparse.Namespace, config: BatchConfig) -> int:
    # No key, no client, no journal lock, nothing created: only reads.
    stream = await open_stream(args.input)
    source = open_input(args, **_checks(config), stream=stream)
    sink = make_sink(args.output, overwrite=config.overwrite)
    plan = await dry_run(source, sink, attrs.evolve(config, journal=_journal_path(args)))
    return print_dry_run(plan.summary())


def print_dry_run(summary: str) -> int:
    """Show a dry run's plan (the plain one's or Dask's) on standard output; the exit code."""
    try:
        print("Dry run: nothing was sent.")
        print(summary)
        sys.stdout.flush()  # here, not at exit: a reader that is gone is found below
    except BrokenPipeError as exc:
        silence_stdout()
        print(
            f"freepik-bg: stopped: standard output was closed ({exc.strerror or exc}) before "
            "the plan was shown (nothing was sent): pipe it into a reader that reads it all",
            file=sys.stderr,
        )
        return EXIT_STOPPED
    return EXIT_OK


def _again(args: argparse.Namespace) -> str:
    """What a resume needs besides the command, when INPUT was read as it came: the list."""
    if args.input == "-":
        return " (feed it the same list on standard input again)"
    if streamed(args.input):
        return f" (feed it the same list in a new pipe: {args.input} was read to its end)"
    return ""


def stopped(reason: str, not_attempted: int = 0, again: str = "") -> int:
    """Say why the run stopped, and how to resume (``again``: see `_again`); `EXIT_STOPPED`."""
    untried = f" {not_attempted} item(s) were not attempted." if not_attempted else ""
    rerun = f"Rerun the same command to resume{again}."
    print(f"freepik-bg: stopped: {reason}.{untried} {rerun}", file=sys.stderr)
    return EXIT_STOPPED


async def run_remove(args: argparse.Namespace, argv: Sequence[str], config: BatchConfig) -> int:
    """Run ``freepik-bg remove``; everything that can be checked is checked before any POST."""
    check_own_files(args, _journal_path(args))
    if args.dry_run:
        return await _dry_run(args, config)
    api_key = read_api_key(args.api_key_file)
    # The client first: a bad base URL is found before anything is created on disk.
    client = batch_client(
        config,
        api_key=api_key,
        base_url=args.base_url,
        timeout=args.timeout,
        max_retries=args.max_retries,
        retry_ambiguous=not args.no_retry_ambiguous,
        http_backend=args.http_backend,
    )
    # Closed however the checks below end: no open input or pool left behind.
    async with client:
        stream = await open_stream(args.input)
        source = open_input(args, **_checks(config), stream=stream)
        try:
            return await _checked_run(args, argv, config, client, source)
        finally:
            source.close()


async def _checked_run(
    args: argparse.Namespace,
    argv: Sequence[str],
    config: BatchConfig,
    client: AsyncClient,
    source: Input,
) -> int:
    """The destination and the spending question checked, then the batch, then the summary."""
    entries, total = source.entries, source.total
    sink = make_sink(args.output, overwrite=config.overwrite)
    check = getattr(sink, "check", None)
    if check is not None:
        await check()
    if args.report is not None:
        try:
            check_report_path(args.report)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if total == 0 and not source.unusable:
        print(f"freepik-bg: found 0 URLs or images in {args.input}: nothing to do", file=sys.stderr)
        return EXIT_OK
    # Only unusable lines: they still run (no POST), to be listed, reported, exit 1.
    planned = attrs.evolve(config, journal=_journal_path(args))
    reopen = functools.partial(open_input, args, **_checks(config))
    if not await confirm_spending(args, total, reopen, sink, planned):
        print("freepik-bg: not confirmed: nothing was sent", file=sys.stderr)
        return EXIT_USAGE
    journal = _open_journal(args)  # first: a second run on one journal is told so
    try:
        held = lock_output(args.output)
    except BaseException:
        journal.close()
        raise
    to_stdout = args.report is not None and str(args.report) == "-"
    display = make_display(
        args.progress, quiet=args.quiet, stream=sys.stderr if to_stdout else None
    )
    config = attrs.evolve(config, journal=journal, progress=display.on_event)
    try:
        report = ReportWriter(args.report) if args.report is not None else None
    except OSError as exc:
        journal.close()
        release(held)
        raise UsageError(f"--report {args.report}: cannot create it: {exc.strerror}") from None
    tally = _Tally()
    start = anyio.current_time()
    stop_reason: str | None = None
    closed: str | None = None
    try:
        try:
            async with anyio.create_task_group() as tg:
                async with client.batch(entries, sink, config) as results:
                    tg.start_soon(_watch_signals, results, display, tally)
                    display.start(results.stats, total)
                    async for item in results:
                        tally.add(
                            item.status,
                            not_attempted=not_attempted(item),
                            duplicate=item.duplicate_of is not None,
                        )
                        display.item(item)
                        if display.closed is not None and closed is None:
                            # Its reader is gone (`| head`): spend nothing more on lines no
                            # one reads; what was sent is finished, as on a first Ctrl-C.
                            closed = display.closed
                            results.stop()
                        if report is not None:
                            report.add(item)
                    stop_reason = results.stop_reason
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_single(group)
    except JournalError as exc:
        # Mid-run (opening it was checked before the first POST): credits were spent, so
        # this is a stopped run, with its summary and report, not a usage error.
        stop_reason = str(exc)
    except BaseException:
        if report is not None:
            report.discard()  # no half-written temp file left beside the report
        raise
    finally:
        display.stop()
        journal.close()
        release(held)
    elapsed = anyio.current_time() - start
    if closed is not None:
        closed += (
            ": its per-item lines stopped there, and nothing more was sent "
            "(what was sent was finished)"
        )
        stop_reason = closed if stop_reason is None else f"{stop_reason}; {closed}"
    summary = {
        **tally.counts,
        "total": sum(tally.counts.values()),
        "not_attempted": tally.not_attempted,
        "duplicates": tally.duplicates,
        "elapsed_seconds": round(elapsed, 3),
        "interrupted": tally.signals > 0,
        "stop_reason": stop_reason,
    }
    if report is not None:
        try:
            report.finish(summary)
        except OSError as exc:
            # The items are stored and journaled all the same: a rerun skips them and
            # writes the report, paying nothing again.
            then = "make room, and the rerun" if exc.errno in NO_SPACE else "a rerun"
            failure = (
                f"cannot write the report {args.report}: {exc.strerror or exc} (every item "
                f"above was stored and journaled: {then} writes it)"
            )
            stop_reason = failure if stop_reason is None else f"{stop_reason}; {failure}"
    display.summary(tally.counts, elapsed, output=str(args.output), journal=str(journal.path))
    if stop_reason is not None:
        return stopped(stop_reason, tally.not_attempted, _again(args))
    if tally.signals:
        if tally.not_attempted:
            print(f"{tally.not_attempted} item(s) were not attempted.", file=sys.stderr)
        print(f"Interrupted. Resume with:\n  {_resume_command(argv)}", file=sys.stderr)
        if again := _again(args):
            print(again.strip(), file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.counts["failed"] else EXIT_OK
