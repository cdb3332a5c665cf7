"""Fixtures for the emulator's own tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from freepik_bg.testing import Emulator

# Re-exported so the fixture exists even when freepik-bg is not installed (and so its
# pytest11 entry point is not loaded); a conftest fixture simply shadows the plugin's.
from freepik_bg.testing._pytest_plugin import (
    freepik_emulator,
    pytest_configure as _plugin_configure,
)

__all__ = ["freepik_emulator"]

Post = Callable[..., httpx.Response]


def pytest_configure(config: pytest.Config) -> None:
    _plugin_configure(config)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(seed=1234) as emulator:
        yield emulator


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy configured in the environment must not see loopback traffic.
    with httpx.Client(trust_env=False, timeout=30.0) as http:
        yield http


@pytest.fixture
def post(emu: Emulator, client: httpx.Client) -> Post:
    """POST image_url (a sample name, or a URL) to the emulator with its API key.

    ``raw=True`` sends the value as it is, for validation tests.
    """

    def send(
        image: str, *, key: str | None = "default", raw: bool = False, **kwargs: Any
    ) -> httpx.Response:
        url = image if raw or "://" in image else emu.image_url(image)
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["x-freepik-api-key"] = emu.api_key if key == "default" else key
        return client.post(emu.api_url, data={"image_url": url}, headers=headers, **kwargs)

    return send
