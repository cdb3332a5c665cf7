"""Stopping ``freepik-bg remove`` on Dask: Ctrl-C/SIGTERM, and a batch-wide failure.

Both go through the computation's shared budget (`freepik_bg._dask_gate`):
once it is stopped, no partition sends another POST (each item is failed as
"not attempted"), while the POSTs already sent finish and are stored and
journaled by their partitions. The computation then ends on its own, and
the command prints its summary and how to resume, as the plain path does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import attrs

__all__ = [
    "INTERRUPTED",
    "Stopper",
    "not_attempted",
    "quiet_abandon",
    "workers_ignore_sigint",
]

INTERRUPTED = "the run was interrupted"
"""The stop reason of a Ctrl-C or SIGTERM (the items' "not attempted: ..." text)."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The loggers of this process that an abandoned cluster's shutdown writes to. Their
# children too: distributed gives some their own level (distributed.client: WARNING),
# which a level on "distributed" alone does not lower.
_NOISY = ("asyncio", "distributed", "tornado")

# How long the workers get to go quiet before the cluster closes anyway (a round trip
# through the scheduler; milliseconds unless a worker is wedged).
_MUTE_TIMEOUT = 5.0


def _quiet_loggers() -> None:
    """Nothing below CRITICAL from distributed, tornado or asyncio in this process, for good.

    For a command that is exiting: the tasks that an abandon cuts short end in errors
    that they log as the client and the cluster close, and again at interpreter exit.
    """
    # A copy: the client's loop thread may be making loggers meanwhile.
    for name in [*_NOISY, *logging.Logger.manager.loggerDict.copy()]:
        if name.split(".")[0] in _NOISY:
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _mute_stderr() -> None:
    """In a worker process: nothing it writes to stderr from now on reaches the terminal."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
    finally:
        os.close(devnull)


def quiet_abandon(*, local: bool) -> None:
    """Before the cluster closes on an abandoned run: nothing of it under the last words.

    This process's loggers go quiet (`_quiet_loggers`), and so do a local cluster's
    worker processes (``local``), which print to this command's terminal: closing the
    cluster stops them one by one, and one still sending a partition's data to one
    that is gone logged an ERROR with a traceback (``failed during get data``). They
    are muted before any of them stops, so they had nothing to say yet; their whole
    stderr, not their loggers: an exception ignored at exit is printed past those.
    An existing cluster's workers (``--scheduler``) keep their output.
    """
    _quiet_loggers()
    if not local:
        return
    from distributed import default_client

    client = default_client()

    def mute() -> None:
        # A worker that is gone or a client that fails only costs the silence.
        with contextlib.suppress(Exception):
            client.run(_mute_stderr, on_error="ignore")

    # In a thread: `Client.run` takes no timeout, and the exit must not hang on it.
    thread = threading.Thread(target=mute, name="freepik-bg-mute", daemon=True)
    thread.start()
    thread.join(_MUTE_TIMEOUT)


@contextlib.contextmanager
def workers_ignore_sigint() -> Iterator[None]:
    """Start a local cluster's processes with SIGINT ignored (they inherit it).

    A Ctrl-C reaches the terminal's whole process group: the worker processes
    would die with their POSTs in flight (paid for, never stored) and a
    traceback each. This process alone decides, and stops them through the
    budget. A Ctrl-C while the cluster starts is ignored: nothing was sent yet.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@attrs.define(slots=True)
class Stopper:
    """The first signal stops the budget (a drain); the second abandons the run."""

    budget: Any  # freepik_bg._dask_gate._Budget, from the calling process
    signals: int = 0
    # Unless --verbose: the client's tasks that the abandon cuts short end in errors that
    # distributed and asyncio log as it closes, tracebacks under the command's last words.
    quiet: bool = True

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            if self.quiet:
                # Here, before the KeyboardInterrupt: the client's loop thread logs as
                # soon as the compute is abandoned, racing any later change.
                _quiet_loggers()
            print(
                "freepik-bg: abandoning items in flight: the links of answers that arrived "
                "are in the journals; POSTs still waiting for an answer may have been billed, "
                "and a resume sends them again",
                file=sys.stderr,
                flush=True,
            )
            raise KeyboardInterrupt
        print(
            "freepik-bg: stopping: sending nothing more; finishing and storing what was already "
            "paid for. Press Ctrl-C again to abandon it (answers that arrived keep their "
            "links in the journals; a POST still waiting for its answer is lost, and may have "
            "been billed).",
            file=sys.stderr,
            flush=True,
        )
        # Not here: the budget may be a round trip to the scheduler, and this handler
        # runs in the main thread, in the middle of the compute that waits on it.
        threading.Thread(
            target=self.budget.stop, args=(INTERRUPTED,), name="freepik-bg-stop", daemon=True
        ).start()

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the run while open."""
        previous = {signum: signal.signal(signum, self._handle) for signum in _SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop_reason(self) -> str | None:
        """Why the run stopped early, other than a signal: ``None`` if it did not."""
        reason: str | None = self.budget.stopped()
        return None if reason == INTERRUPTED else reason


def not_attempted(error: Any) -> bool:
    """Whether a result row's error is an item the stop kept from being sent."""
    return isinstance(error, str) and error.startswith("not attempted: ")
