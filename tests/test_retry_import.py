"""A batch's first retry imports tenacity off the event loop (#15).

tenacity is imported at the first failure only, so that start-up and the first POST do
not pay for it; that import takes 20 ms, and over 100 where tornado is installed (tenacity
imports it), which on the event loop would stall every other item of the batch. Checked
in a fresh interpreter, where tenacity is not imported yet.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import sys, threading

import anyio

threads = {}


class Spy:
    # Sees where each import of tenacity (and of tornado, which it imports) starts.
    def find_spec(self, name, path=None, target=None):
        if name in ("tenacity", "tornado"):
            threads.setdefault(name, threading.get_ident())
        return None


sys.meta_path.insert(0, Spy())

from freepik_bg import APIConnectionError, RetryPolicy
from freepik_bg._retries import retry_call

assert "tenacity" not in sys.modules


async def main():
    calls = 0

    async def flaky():
        nonlocal calls
        calls += 1
        if calls == 1:
            raise APIConnectionError("connection refused")
        return "ok"

    loop = threading.get_ident()
    result, attempts, _ = await retry_call(
        flaky, operation="download", url="https://cdn.example.com/a.png",
        policy=RetryPolicy(initial_backoff=0.0, jitter=0.0),
    )
    print(result, attempts, threads["tenacity"] != loop, "tenacity" in sys.modules)


anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_first_retry_imports_tenacity_in_a_worker_thread(backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, backend], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "2", "True", "True"]
