"""Lazy package exports: a package's public names, imported on first use.

`import freepik_bg` and `import freepik_bg.testing` import nothing heavy, so that the
command line starts fast (`freepik-bg --help` never imports httpx, rich or the
emulator). Each package keeps its `__all__` and, for type checkers, a star import of
its `_api` module under `TYPE_CHECKING`; at run time its module `__getattr__` is made
here and, at the first public name asked for, imports `_api` and binds every name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Collection[str], *, public_path: bool = False
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module ``__getattr__`` for `package` that imports ``package + "._api"`` once,
    and its ``__dir__``, which lists the names not yet imported too.

    With `public_path`, each class and function shows ``package`` as its module in
    reprs and tracebacks (``freepik_bg.AsyncClient``, as httpx does), and pickles by it.

    Examples:
        >>> __getattr__, __dir__ = lazy_exports(__name__, __all__)  # doctest: +SKIP
    """

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        source = importlib.import_module(package + "._api")
        namespace = vars(sys.modules[package])
        for each in names:
            if not hasattr(source, each):
                continue  # a lazy export of its own, handled by the package
            obj = getattr(source, each)
            if public_path and callable(obj) and obj.__module__.startswith(package + "."):
                obj.__module__ = package
            namespace[each] = obj
        return namespace[name]

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__
