"""pytest plugin (entry point ``freepik_bg``): the ``freepik_emulator`` fixture.

Loaded by every pytest run in an environment where freepik-bg is installed, so it
imports nothing heavy at import time: uvicorn, Pillow and numpy are only needed once
the fixture is used.

Examples:
    ```python
    def test_cutout(freepik_emulator):
        ...

    @pytest.mark.freepik_emulator(link_ttl=1, rate=5)
    def test_with_knobs(freepik_emulator):
        ...
    ```
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from freepik_bg.testing._server import Emulator

__all__ = ["freepik_emulator", "pytest_configure"]

_MARKER = "freepik_emulator"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``freepik_emulator`` marker (its keywords go to ``Emulator``)."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**knobs): keyword arguments for the freepik_emulator fixture's Emulator",
    )


@pytest.fixture
def freepik_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """A running [`Emulator`][freepik_bg.testing.Emulator] on 127.0.0.1, fresh for each test.

    Knobs come from an optional ``@pytest.mark.freepik_emulator(**knobs)`` marker.
    Needs the ``emulator`` extra: ``pip install freepik-bg[emulator]``.
    """
    try:
        from freepik_bg.testing._server import Emulator
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"the freepik_bg emulator needs the 'emulator' extra: {exc}")
    knobs: dict[str, Any] = {}
    marker = request.node.get_closest_marker(_MARKER)
    if marker is not None:
        knobs.update(marker.kwargs)
    with Emulator(**knobs) as emulator:
        yield emulator
