"""One control interface in front of the emulator, wherever its app runs.

An `Emulator` changes knobs, queues faults, moves time and reads counters
through an `EmulatorControl`: `InProcessControl` calls the app directly
(thread mode, and any emulator before it starts), `AdminControl` sends the same
calls to the admin routes of a child process (process mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

from freepik_bg.testing import _admin
from freepik_bg.testing._app import EmulatorApp
from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._faults import ENDPOINTS, Endpoint, Fault
from freepik_bg.testing._stats import EmulatorStats

__all__ = ["AdminControl", "EmulatorControl", "InProcessControl"]


class EmulatorControl(Protocol):
    """What an `Emulator` can ask of its app."""

    def config(self) -> EmulatorConfig:
        """The current knobs."""
        ...

    def configure(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Apply `EmulatorConfig.with_changes` keywords; returns the new config."""
        ...

    def inject(self, endpoint: Endpoint, faults: Sequence[Fault]) -> None:
        """Queue ``faults`` for the next requests to ``endpoint``."""
        ...

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        ...

    def advance_time(self, seconds: float) -> None:
        """Move the app's clock forward."""
        ...

    def stats(self) -> EmulatorStats:
        """A snapshot of the counters."""
        ...

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log."""
        ...

    def sample_bytes(self, name: str) -> bytes:
        """The bytes of sample ``name``, as the app serves them."""
        ...

    def close(self) -> None:
        """Release what the control holds; the app itself is stopped elsewhere."""
        ...


class InProcessControl:
    """Direct calls on an app in this process."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    def config(self) -> EmulatorConfig:
        return self.app.config

    def configure(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        return self.app.configure(**changes)

    def inject(self, endpoint: Endpoint, faults: Sequence[Fault]) -> None:
        self.app.faults.push(endpoint, faults)

    def clear_faults(self) -> None:
        self.app.faults.clear()

    def advance_time(self, seconds: float) -> None:
        self.app.clock.advance(seconds)

    def stats(self) -> EmulatorStats:
        return self.app.stats.snapshot()

    def reset_stats(self) -> None:
        self.app.stats.reset()

    def sample_bytes(self, name: str) -> bytes:
        return self.app.sample_bytes(name)

    def close(self) -> None:
        pass

    def hand_over(self, other: EmulatorControl) -> None:
        """Replay on ``other`` what this app holds besides its config: faults, time."""
        for endpoint in ENDPOINTS:
            pending = self.app.faults.pending(endpoint)
            if pending:
                other.inject(endpoint, pending)
        if self.app.clock.offset:
            other.advance_time(self.app.clock.offset)


class AdminControl:
    """The same calls as HTTP requests to the admin routes of an emulator elsewhere."""

    def __init__(self, base_url: str, last_config: EmulatorConfig) -> None:
        self._http: httpx.Client | None = httpx.Client(
            base_url=base_url, trust_env=False, timeout=30.0
        )
        # Once the child is gone, its last known config still answers `Emulator.config`.
        self._last_config = last_config

    def _send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        if self._http is None:
            raise RuntimeError("the emulator is not running")
        response = self._http.request(method, path, json=json)
        response.raise_for_status()
        return response

    def config(self) -> EmulatorConfig:
        if self._http is None:
            return self._last_config
        self._last_config = EmulatorConfig.from_json(self._send("GET", _admin.CONFIG).json())
        return self._last_config

    def configure(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        # Validated here first, so that a bad value raises the same error in both modes.
        new = self._last_config.with_changes(**changes)
        sent = new.to_json()
        payload = {name: sent[name] for name in self._last_config.field_changes(changes)}
        answer = self._send("POST", _admin.CONFIG, json=payload).json()
        self._last_config = EmulatorConfig.from_json(answer)
        return self._last_config

    def inject(self, endpoint: Endpoint, faults: Sequence[Fault]) -> None:
        body = {"endpoint": endpoint, "faults": [f.to_json() for f in faults]}
        self._send("POST", _admin.FAULTS, json=body)

    def clear_faults(self) -> None:
        self._send("DELETE", _admin.FAULTS)

    def advance_time(self, seconds: float) -> None:
        self._send("POST", _admin.TIME, json={"advance": seconds})

    def stats(self) -> EmulatorStats:
        return EmulatorStats.from_json(self._send("GET", _admin.STATS).json())

    def reset_stats(self) -> None:
        self._send("POST", _admin.STATS_RESET)

    def sample_bytes(self, name: str) -> bytes:
        return self._send("GET", f"/samples/{name}").content

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
