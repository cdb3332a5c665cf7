"""``freepik-bg remove --workers N`` / ``--scheduler ADDRESS`` / a ``.parquet`` INPUT: on Dask.

The parser only gains two flags here; dask is imported once one of them (or a
parquet INPUT) is used, so the plain CLI starts as fast as before.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import BatchConfig, at_least
from ._input import BadLine, InputError, InputLine, read_entries
from ._report import check_report_path
from ._sinks import file_mode

if TYPE_CHECKING:
    from ._dask_repeats import Repeats

__all__ = ["add_dask_options", "run_dask_remove", "wants_dask"]

# Partitions of this many URLs: long enough that a worker's start-up is small next
# to it (50 s at 10/s), short enough that a lost worker redoes little.
_PARTITION_SIZE = 500


def _workers(text: str) -> int:
    try:
        return at_least(1)(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_dask_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--scheduler`` on ``freepik-bg remove``."""
    group = parser.add_argument_group("Dask (pip install 'freepik-bg[dask]'; see docs/scale.md)")
    group.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="run on a local Dask cluster of N worker processes sharing one --rate",
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing Dask cluster, e.g. tcp://host:8786, sharing one --rate",
    )


def wants_dask(args: argparse.Namespace) -> bool:
    """Whether this ``remove`` runs on Dask."""
    return bool(args.workers or args.scheduler or str(args.input).endswith(".parquet"))


# What the Dask path passes on to each partition's batch; every other option of
# `freepik-bg remove` is refused there rather than silently ignored (money may ride on it).
_DASK_FIELDS = frozenset(
    {"concurrency", "rate", "burst", "size", "overwrite", "fail_fast", "resubmit_expired"}
)


def _ignored_flags(args: argparse.Namespace) -> list[str]:
    """The flags given that the Dask path would not honour."""
    import attrs

    from ._config import BatchConfig

    flags = [
        meta["flag"] or "--" + field.name.replace("_", "-")
        for field in attrs.fields(BatchConfig)
        if (meta := field.metadata)["cli"]
        and field.name not in _DASK_FIELDS | {"journal"}
        and getattr(args, field.name) != field.default
    ]
    return flags + [
        flag
        for flag, given in (
            ("--name-column", args.name_column is not None),
            ("--progress", args.progress != "auto"),
            ("--timeout", args.timeout is not None),
            ("--max-retries", args.max_retries is not None),
            ("--no-retry-ambiguous", args.no_retry_ambiguous),
            ("--http-backend", args.http_backend != "httpx"),
            ("--delimiter", args.delimiter is not None and args.input.endswith(".parquet")),
        )
        if given
    ]


def _check(args: argparse.Namespace) -> None:
    # Each function imports the remove command itself: the parser imports this module
    # (add_dask_options), and `freepik-bg --help` must not load the SDK (tests/test_startup.py).
    from ._remove_command import UsageError

    if args.workers and args.scheduler:
        raise UsageError("give either --workers or --scheduler, not both")
    instead = (
        "convert the .parquet INPUT to a CSV and run" if args.input.endswith(".parquet") else "run"
    ) + " without --workers and --scheduler"
    if args.journal:
        raise UsageError(
            "--journal is not used on Dask: each partition keeps its own journal next to "
            "the outputs (OUTPUT/.freepik-bg-dask/)"
        )
    unsupported = _ignored_flags(args)
    if unsupported:
        raise UsageError(
            f"{', '.join(unsupported)} cannot be used with Dask yet (nothing was sent): "
            f"{instead}, or leave {'them' if len(unsupported) > 1 else 'it'} out"
        )
    if args.input.endswith(".parquet") and not args.column:
        raise UsageError("a .parquet INPUT needs --column NAME (the column of URLs)")


def _read(args: argparse.Namespace) -> Any:
    """INPUT, read: a lazy Series for a .parquet INPUT; else its entries, in a list."""
    import dask.dataframe as dd

    from ._remove_command import UsageError

    if args.input.endswith(".parquet"):
        if not Path(args.input).exists():
            raise UsageError(f"cannot read {args.input}: no such file or directory")
        table = dd.read_parquet(args.input, columns=[args.column])
        return table[args.column]
    try:
        entries = read_entries(args.input, column=args.column, delimiter=args.delimiter)
        return [entry for entry in entries if isinstance(entry, InputLine | BadLine)]
    except InputError as exc:
        raise UsageError(str(exc).replace("column=NAME", "--column NAME")) from None


def _urls(source: Any, workers: int, *, lines: bool = False) -> Any:
    """The partitions of INPUT (`_read`): the same for a run and for its plan.

    A run gets the URLs; a plan may get their `InputLine` (``lines``), so that its
    reasons name lines as the plain plan's do.
    """
    import dask.bag as db

    if not isinstance(source, list):
        return source  # a parquet column: partitioned by its file
    # A bad line goes on as itself: the batch fails it without a request, as the plain
    # path does. Its text (U+FFFD for the bad bytes) is no URL the user wrote.
    items = source if lines else [e.url if isinstance(e, InputLine) else e for e in source]
    partitions = max(1, min(len(items), max(2 * workers, math.ceil(len(items) / _PARTITION_SIZE))))
    return db.from_sequence(items, npartitions=partitions)


def _split(source: Any) -> tuple[Any, Repeats | None]:
    """A text INPUT without the later occurrences of its URLs (`_dask_repeats`: otherwise
    two partitions may pay for one image); a parquet column as it is."""
    if not isinstance(source, list):
        return source, None
    from ._dask_repeats import Repeats

    kept, repeats = Repeats.split(source)
    # None without repeats: then nothing is remapped or added after the compute.
    return kept, repeats if repeats.count else None


def _count(source: Any) -> int:
    """INPUT's entries (reads a parquet column: only for a run that may be asked)."""
    return len(source)


def _options(config: BatchConfig) -> dict[str, Any]:
    """The options each partition's batch gets (the cluster's gate paces, not them)."""
    return {name: getattr(config, name) for name in _DASK_FIELDS - {"rate", "burst"}}


def _plan(
    args: argparse.Namespace,
    source: Any,
    workers: int,
    config: BatchConfig,
    dropped: Repeats | None,
) -> tuple[int, str]:
    """The run's credits and plan, computed on the cluster (see `_dask_plan`); nothing is
    sent or created. ``dropped``: the repeats `_split` took out of ``source``."""
    import attrs
    from dask.base import compute

    from ._dask_plan import add_up, build_plan

    urls = _urls(source, workers, lines=True)
    parts = build_plan(urls, args.output, _options(config), secrets.token_hex(8))
    plan = add_up(compute(*parts), config.rate, config.burst)
    if dropped is not None:  # each shares its first occurrence's POST, as in a batch
        plan = attrs.evolve(
            plan, total=plan.total + dropped.count, duplicates=plan.duplicates + dropped.count
        )
    return plan.credits, plan.summary()


def _cluster(args: argparse.Namespace) -> contextlib.AbstractContextManager[int]:
    """`_client`, or Dask's local threaded scheduler for a .parquet INPUT without either flag."""
    return _client(args) if (args.workers or args.scheduler) else contextlib.nullcontext(1)


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[int]:
    """The cluster to run on, current while open; yields its number of workers."""
    from distributed import Client, LocalCluster

    from ._dask_stop import workers_ignore_sigint

    if args.verbose < 1:
        # distributed logs every connection at INFO: the summary would drown in it.
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.scheduler:
        with Client(args.scheduler) as client:
            yield max(1, len(client.scheduler_info()["workers"]))
        return
    with workers_ignore_sigint():
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # Its HTTP server runs even without the dashboard, on port 8787 unless told:
            # with another cluster (or a second run) there, a warning, then another port.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            # The workers print to this terminal too: a run that is abandoned cancels their
            # tasks, and each would warn of it under the command's own last words.
            silence_logs=logging.WARNING if args.verbose else logging.ERROR,
        )
    with cluster, Client(cluster):
        yield args.workers


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(f".{path.name}.part")
    part.write_text(text, encoding="utf-8")
    part.chmod(file_mode())
    os.replace(part, path)


def run_dask_remove(args: argparse.Namespace, argv: Sequence[str], config: BatchConfig) -> int:
    """Run ``freepik-bg remove`` on Dask; print a summary; the exit code."""
    from ._destination_lock import release
    from ._remove_command import UsageError, lock_output, read_api_key

    _check(args)
    try:
        from . import _dask_graph, _dask_stop  # noqa: F401 - the extra is installed
    except ImportError as exc:
        raise UsageError(
            f"--workers, --scheduler and .parquet inputs need the 'dask' extra: "
            f"pip install 'freepik-bg[dask]' ({exc})"
        ) from None
    if args.dry_run:
        return _dry_run(args, config)
    api_key = read_api_key(args.api_key_file)
    if args.report is not None:
        try:
            check_report_path(args.report)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    job = secrets.token_hex(8)
    held = lock_output(args.output)  # before the cluster starts: refused, nothing was sent
    try:
        return _compute(args, argv, api_key, job, config)
    finally:
        release(held)


def _dry_run(args: argparse.Namespace, config: BatchConfig) -> int:
    """Print the plan, as the plain dry run does; the exit code."""
    from ._remove_command import print_dry_run

    # No key, no lock, nothing created (no marker, no journal folder): only reads.
    source, dropped = _split(_read(args))
    with _cluster(args) as workers:
        _, text = _plan(args, source, workers, config, dropped)
    return print_dry_run(text)  # once the cluster is gone: the plan is the last word


def _compute(
    args: argparse.Namespace,
    argv: Sequence[str],
    api_key: str,
    job: str,
    config: BatchConfig,
) -> int:
    """The question, then the computation on the cluster, with its signals handled; the
    exit code."""
    from ._cli_plan import approved, may_ask
    from ._dask_graph import budget_spec, build_frame
    from ._dask_stop import Stopper, quiet_abandon
    from ._remove_command import EXIT_INTERRUPTED, EXIT_USAGE, _resume_command

    entries = _read(args)
    source, dropped = _split(entries)
    with _cluster(args) as n:
        # The plain path's rule (`may_ask`): the plan, which reads the whole input once
        # more on the cluster, only for a run that would be asked, on a terminal.
        if may_ask(args, lambda: _count(source)) and not approved(
            args, *_plan(args, source, n, config, dropped)
        ):
            print("freepik-bg: not confirmed: nothing was sent", file=sys.stderr)
            return EXIT_USAGE
        frame = build_frame(
            _urls(source, n),
            args.output,
            column=None,
            rate=config.rate,
            burst=config.burst,
            api_key=api_key,
            base_url=args.base_url,
            options=_options(config),
            job=job,
        )
        budget = budget_spec(job, config.rate, config.burst).from_caller()
        stopper = Stopper(budget, quiet=not args.verbose)
        try:
            with stopper.handling_signals():
                result = frame.compute().sort_values("index")
            if dropped is not None:
                result = dropped.rows(result, entries)
        except KeyboardInterrupt:
            # The second signal: what was in flight is abandoned (its links, if paid,
            # are in the partitions' journals, and the resume downloads them).
            print(f"Interrupted. Resume with:\n  {_resume_command(argv)}", file=sys.stderr)
            if not args.verbose:
                # Before the cluster closes on the tasks in flight (leaving this block).
                quiet_abandon(local=bool(args.workers))
            return EXIT_INTERRUPTED
        reason = stopper.stop_reason()
    return _finish(args, argv, result, reason, interrupted=stopper.signals > 0)


def _finish(
    args: argparse.Namespace,
    argv: Sequence[str],
    result: Any,
    reason: str | None,
    *,
    interrupted: bool,
) -> int:
    """The per-item lines, the summary, the report, the resume line; the exit code."""
    from ._dask_stop import not_attempted
    from ._remove_command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, _resume_command, stopped

    counts = {status: int((result["status"] == status).sum()) for status in ("ok", "skipped")}
    counts["failed"] = len(result) - sum(counts.values())
    untried = sum(map(not_attempted, result["error"].tolist()))
    if not args.quiet:
        for row in result[result["status"] == "failed"].itertuples():
            # A stop says once why; not one line per item it kept from being sent, nor
            # per POST already in flight that failed the same way (a refused key).
            if not_attempted(row.error) or (reason is not None and str(row.error) in reason):
                continue
            print(f"failed {row.image_url}: {row.error}", file=sys.stderr)
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    print(f"freepik-bg: {len(result)} URLs: {summary}; outputs in {args.output}", file=sys.stderr)
    if args.report is not None:
        records = [_report_record(row) for row in json.loads(result.to_json(orient="records"))]
        totals: dict[str, Any] = {**counts, "total": len(result), "not_attempted": untried}
        totals |= {"interrupted": interrupted, "stop_reason": reason}
        text = json.dumps({"items": records, "summary": totals})
        if str(args.report) == "-":
            print(text)
        else:
            _write_atomic(Path(args.report), text + "\n")
    if reason is not None:
        return stopped(reason, untried)
    if interrupted:
        if untried:
            print(f"{untried} item(s) were not attempted.", file=sys.stderr)
        print(f"Interrupted. Resume with:\n  {_resume_command(argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _report_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the result frame in the plain run's report shape (`ItemResult.to_record`):
    ``url``, and the ``error`` as ``{"type", "message"}``, so one parser reads both."""
    message, kind = row.get("error"), row.get("error_type")
    return {
        "index": row.get("index"),
        "url": row.get("image_url"),
        "status": row.get("status"),
        "location": row.get("location"),
        "error": None if message is None else {"type": kind, "message": message},
        "attempts": row.get("attempts"),
        "duplicate_of": row.get("duplicate_of"),
    }
