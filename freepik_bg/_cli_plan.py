"""The CLI's look before it spends: ``--dry-run``, ``--confirm-over N`` and ``--yes``.

Both build the same `Plan` as the SDK's `plan_batch`. A dry run prints it
and exits 0 without a request to the API. A real run on an interactive
terminal whose plan spends more than ``--confirm-over`` credits shows it and
asks first; a run whose standard input is not a terminal (a pipe, cron, CI)
never prompts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import closing
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Types only: the parser imports this module (add_plan_options, parse_delimiter),
    # and `freepik-bg --help` must not load the SDK (tests/test_startup.py).
    from ._cli_inputs import Input
    from ._config import BatchConfig
    from ._plan import Plan
    from ._sinks import Sink

__all__ = [
    "DEFAULT_CONFIRM_OVER",
    "add_plan_options",
    "approved",
    "confirm_spending",
    "dry_run",
    "may_ask",
    "parse_delimiter",
]

DEFAULT_CONFIRM_OVER = 1000
"""Credits a run may spend before an interactive terminal is asked to confirm."""

_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def parse_delimiter(text: str) -> str:
    r"""One character, or a name for one a shell makes awkward: ``tab`` (or ``\t``), ...

    Examples:
        >>> parse_delimiter("\\t"), parse_delimiter(";")
        ('\t', ';')
    """
    value = _DELIMITER_NAMES.get(text.lower(), text)
    if len(value) != 1:
        names = ", ".join(_DELIMITER_NAMES)
        raise ValueError(f"expected one character or one of {names}, got {text!r}")
    return value


def add_plan_options(parser: argparse.ArgumentParser, number: Callable[[str], Any]) -> None:
    """``--dry-run``, ``--confirm-over N`` and ``--yes`` (``number`` parses N)."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read and check everything, print what would be sent and spent, send nothing",
    )
    parser.add_argument(
        "--confirm-over",
        type=number,
        default=DEFAULT_CONFIRM_OVER,
        metavar="N",
        help="on a terminal, ask before spending more than N credits "
        f"(default {DEFAULT_CONFIRM_OVER}; never asked when not interactive)",
    )
    parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask before spending (see --confirm-over)"
    )


async def dry_run(source: Input, sink: Sink, config: BatchConfig) -> Plan:
    """The plan of ``source`` into ``sink``; nothing is sent or written."""
    from ._plan import plan_batch

    with closing(source):
        return await plan_batch(source.entries, sink, config)


def _interactive() -> bool:
    stdin = sys.stdin
    return stdin is not None and stdin.isatty()


def may_ask(args: argparse.Namespace, count: Callable[[], int | None]) -> bool:
    """Whether a run could be asked about its spending, so its plan is needed first.

    Only on a terminal, without ``--yes``, and when the input's URL count could
    exceed ``--confirm-over``: every other run reaches its first POST without a plan
    (which reads the whole input once more). ``count`` gives that count (``None``
    for standard input, which cannot be read twice); it is called last, as it may
    read the input (a parquet column on Dask).
    """
    if args.yes or not _interactive():
        return False
    upper_bound = count()
    limit: int = args.confirm_over
    return upper_bound is not None and upper_bound > limit


def approved(args: argparse.Namespace, credits: int, summary: str) -> bool:
    """Whether to spend ``credits``: asks, showing the plan's ``summary``, when over the limit."""
    limit: int = args.confirm_over
    if credits <= limit:
        return True
    print(summary, file=sys.stderr)
    print(
        f"This run would spend {credits} credits, more than --confirm-over {limit}. "
        "Continue? [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    # A blocking read: nothing else runs yet, and a thread would outlive a Ctrl-C here.
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


async def confirm_spending(
    args: argparse.Namespace,
    upper_bound: int | None,
    reopen: Callable[[], Input],
    sink: Sink,
    config: BatchConfig,
) -> bool:
    """Whether to go on: asks on a terminal when the plan spends over ``--confirm-over``.

    ``upper_bound`` (the input's URL count, or ``None`` for standard input)
    spares the plan when the input cannot reach the limit (see `may_ask`).
    """
    if not may_ask(args, lambda: upper_bound):
        return True
    # Only now: a run that is not asked about reaches its first POST without the planner.
    from ._plan import plan_batch

    with closing(reopen()) as source:
        plan = await plan_batch(source.entries, sink, config)
    return approved(args, plan.credits, plan.summary())
