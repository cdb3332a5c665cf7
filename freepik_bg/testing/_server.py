"""The `Emulator`: start, stop, addresses, and knobs, faults and counters.

Where the server runs is `_runners`' business, how the app is reached is
`_control`'s; this module only picks them, once, and delegates.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio

from freepik_bg.testing._app import API_PATH, EmulatorApp
from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._control import AdminControl, EmulatorControl, InProcessControl
from freepik_bg.testing._faults import Endpoint, Fault
from freepik_bg.testing._runners import ProcessRunner, ThreadRunner
from freepik_bg.testing._samples import sample_names
from freepik_bg.testing._serving import url_host
from freepik_bg.testing._stats import EmulatorStats

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Emulator"]


class Emulator:
    """A local, faithful stand-in for Freepik's remove-background API.

    Runs uvicorn on 127.0.0.1 in a background thread (or, with ``process=True``, in a
    child process so benchmarks do not share the GIL). Knobs are the fields of
    [`EmulatorConfig`][freepik_bg.testing.EmulatorConfig], given whole as ``config`` and/or
    one by one as keywords; change them later with
    [`configure`][freepik_bg.testing.Emulator.configure].

    Args:
        config: the starting knobs (default: ``EmulatorConfig()``).
        host: the address to listen on.
        port: the port; 0 picks a free one (see [`port`][freepik_bg.testing.Emulator.port]).
        seed: seeds random faults and latency, for repeatable runs.
        clock: a monotonic time source for link expiry and rate limits (thread mode
            only); [`advance_time`][freepik_bg.testing.Emulator.advance_time] works in both
            modes.
        process: run in a child process.
        log_level: uvicorn's log level.
        **knobs: changes to ``config``: any
            [`EmulatorConfig`][freepik_bg.testing.EmulatorConfig] field (``link_ttl``,
            ``latency``, ``fault_rules``...), or a shorthand of
            [`with_changes`][freepik_bg.testing.EmulatorConfig.with_changes] (``api_key``,
            ``extra_api_keys``, ``rate``, ``burst``). Anything else raises TypeError.

    Examples:
        ```python
        import httpx

        with Emulator() as emu:
            response = httpx.post(
                emu.api_url,
                data={"image_url": emu.image_url("mug-plain.jpg")},
                headers={"x-freepik-api-key": emu.api_key},
            )
            assert response.status_code == 200

        async with Emulator(link_ttl=1, rate=5) as emu:
            ...
        ```
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        clock: Callable[[], float] | None = None,
        process: bool = False,
        log_level: str = "warning",
        **knobs: Any,
    ) -> None:
        if process and clock is not None:
            raise ValueError("a clock cannot be passed to a child process; use advance_time()")
        config = (config or EmulatorConfig()).with_changes(**knobs)
        self._host = host
        self._requested_port = port
        self._seed = seed
        self._process = process
        self._log_level = log_level
        self._port: int | None = None
        self._state: Literal["new", "running", "stopped"] = "new"
        self._runner: ThreadRunner | ProcessRunner | None = None
        # In process mode this app only holds knobs and faults until the child starts.
        self._local = InProcessControl(EmulatorApp(config, seed=seed, clock=clock))
        self._control: EmulatorControl = self._local

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start serving; returns once the port accepts connections."""
        if self._state != "new":
            raise RuntimeError("an Emulator can only be started once")
        if not self._process:
            self._runner = ThreadRunner(
                self._local.app, self._host, self._requested_port, self._log_level
            )
            self._port = self._runner.start()
        else:
            config = self._local.config()
            self._runner = ProcessRunner(
                config, self._host, self._requested_port, self._seed, self._log_level
            )
            self._port = self._runner.start()
            self._control = AdminControl(self.base_url, config)
            self._local.hand_over(self._control)
        self._state = "running"
        return self

    def stop(self) -> None:
        """Stop serving, dropping open connections; idempotent."""
        if self._runner is not None and self._state == "running":
            self._control.close()
            self._runner.stop()
        self._state = "stopped" if self._state != "new" else "new"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Starting takes a few milliseconds of blocking work: keep it off the event loop.
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    # ------------------------------------------------------------------ addresses

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._state == "running"

    @property
    def host(self) -> str:
        """The address listened on."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``: pass it as the SDK's ``base_url``."""
        return f"http://{url_host(self._host)}:{self.port}"

    @property
    def api_url(self) -> str:
        """The full URL of ``POST /v1/ai/beta/remove-background``."""
        return self.url_for(API_PATH)

    @property
    def api_key(self) -> str:
        """The (first) API key the emulator accepts."""
        return self.config.api_keys[0]

    def url_for(self, path: str) -> str:
        """An absolute URL on the emulator: ``url_for("/samples")``."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def image_url(self, name: str) -> str:
        """The URL of a generated sample (see [`sample_names`][freepik_bg.testing.sample_names])."""
        if name not in sample_names():
            raise KeyError(f"unknown sample {name!r}; known: {', '.join(sample_names())}")
        return self.url_for(f"/samples/{name}")

    def sample_bytes(self, name: str) -> bytes:
        """The exact bytes served at `image_url` (generated on first use)."""
        return self._control.sample_bytes(name)

    # ------------------------------------------------------------------ knobs and state

    @property
    def app(self) -> EmulatorApp:
        """The ASGI app (thread mode only)."""
        if self._process:
            raise RuntimeError("the app lives in the child process (process=True)")
        return self._local.app

    @property
    def config(self) -> EmulatorConfig:
        """The current knobs."""
        return self._control.config()

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change knobs at runtime: ``emu.configure(link_ttl=1, rate=5, burst=5)``.

        Takes the [`EmulatorConfig`][freepik_bg.testing.EmulatorConfig] field names, plus
        ``api_key`` (replace the keys) and ``rate``/``burst`` (one token bucket;
        ``rate=None`` for none). Requests already in flight keep the knobs they started with.
        """
        return self._control.configure(changes)

    def inject(self, endpoint: Endpoint, *faults: Fault) -> None:
        """Queue ``faults`` for the next requests to ``endpoint`` ("post" or "download").

        Queued faults are used one per request, in order, before any random fault rule.
        """
        self._control.inject(endpoint, faults)

    def clear_faults(self) -> None:
        """Drop all queued faults (random fault rules stay: see `configure`)."""
        self._control.clear_faults()

    def advance_time(self, seconds: float) -> None:
        """Move the emulator's clock forward: links expire, rate limits refill."""
        self._control.advance_time(seconds)

    @property
    def stats(self) -> EmulatorStats:
        """A snapshot of the counters (an HTTP call to the child in process mode)."""
        return self._control.stats()

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log."""
        self._control.reset_stats()

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        mode = "process" if self._process else "thread"
        return f"<Emulator {where} ({mode}, {self._state})>"


def _json_keys(changes: dict[str, Any]) -> set[str]:
    keys = set(changes)
    if "api_key" in keys:
        keys.add("api_keys")
    if keys & {"rate", "burst"}:
        keys.add("rate_limits")
    return keys
