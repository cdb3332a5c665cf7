"""The ``freepik-bg`` process's entry point: it starts with the cyclic garbage collector paused.

Loading the SDK makes ~100k long-lived objects (modules, classes, functions, the
methods attrs generates) and no garbage; with the collector on, their allocations
set it off ~75 times before the first POST, ~25 ms of the start-up on a quiet
machine. So the console script (and ``python -m freepik_bg``) pauses it before the
first import, and `freepik_bg._cli.main` calls `resume` once the SDK is loaded:
`gc.freeze` moves what start-up made to the permanent generation, where a long
batch's full collections never walk it again, and the collector is back on for the
run. Only this process does this: an application that imports the SDK, or calls
`freepik_bg._cli.main` itself, keeps its collector as it is.
"""

from __future__ import annotations

import gc

__all__ = ["main", "owns_process", "resume"]

_paused = False
_owned = False


def resume() -> None:
    """Turn the collector back on, if `main` paused it; start-up's objects stay frozen.

    Examples:
        >>> resume()  # nothing to do unless `main` paused the collector
    """
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def owns_process() -> bool:
    """Whether this process is the ``freepik-bg`` command (not an application calling it).

    Examples:
        >>> owns_process()
        False
    """
    return _owned


def main() -> int:
    """Run ``freepik-bg`` with the collector paused until its modules are loaded."""
    global _paused, _owned
    _owned = True
    if gc.isenabled():
        gc.disable()
        _paused = True
    try:
        from ._cli import main as cli_main

        return cli_main()
    finally:
        resume()  # however main ended (--help exits before the SDK loads)
