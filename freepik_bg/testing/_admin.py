"""The admin routes under ``/_emulator/``: the app's controls, over HTTP.

An emulator in a child process (``Emulator(process=True)``) is driven through these
routes; they are also handy with ``curl`` against ``python -m freepik_bg.testing``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from freepik_bg.testing._config import EmulatorConfig
from freepik_bg.testing._exchange import Exchange
from freepik_bg.testing._faults import ENDPOINTS, Fault

if TYPE_CHECKING:
    from freepik_bg.testing._app import EmulatorApp

__all__ = [
    "ADMIN_PREFIX",
    "CONFIG",
    "FAULTS",
    "HEALTH",
    "STATS",
    "STATS_RESET",
    "TIME",
    "serve_admin",
]

ADMIN_PREFIX = "/_emulator/"
HEALTH = ADMIN_PREFIX + "health"
STATS = ADMIN_PREFIX + "stats"
STATS_RESET = ADMIN_PREFIX + "stats/reset"
CONFIG = ADMIN_PREFIX + "config"
FAULTS = ADMIN_PREFIX + "faults"
TIME = ADMIN_PREFIX + "time"

_MAX_ADMIN_BYTES = 1024 * 1024
_OK = {"status": "ok"}


async def serve_admin(app: EmulatorApp, ex: Exchange) -> None:
    """Answer one admin request; a malformed one gets a 400 that says what is wrong."""
    route = (ex.method, ex.path.rstrip("/"))
    try:
        if route == ("GET", HEALTH):
            await ex.json(200, _OK)
        elif route == ("GET", STATS):
            await ex.json(200, app.stats.snapshot().to_json())
        elif route == ("POST", STATS_RESET):
            app.stats.reset()
            await ex.json(200, _OK)
        elif route == ("GET", CONFIG):
            await ex.json(200, app.config.to_json())
        elif route == ("POST", CONFIG):
            changes = EmulatorConfig.changes_from_json(await _read_json(ex))
            await ex.json(200, app.configure(**changes).to_json())
        elif route == ("GET", FAULTS):
            pending = {e: [f.to_json() for f in app.faults.pending(e)] for e in ENDPOINTS}
            await ex.json(200, pending)
        elif route == ("POST", FAULTS):
            data = await _read_json(ex)
            faults = [Fault.from_json(f) for f in data["faults"]]
            app.faults.push(data["endpoint"], faults)
            await ex.json(200, _OK)
        elif route == ("DELETE", FAULTS):
            app.faults.clear()
            await ex.json(200, _OK)
        elif route == ("POST", TIME):
            data = await _read_json(ex)
            app.clock.advance(float(data["advance"]))
            await ex.json(200, {"now": app.clock.now()})
        else:
            await ex.json(404, {"message": "Not found"})
    except (KeyError, TypeError, ValueError) as exc:
        await ex.json(400, {"message": f"Bad admin request: {exc}"})


async def _read_json(ex: Exchange) -> dict[str, Any]:
    body = await ex.read_body(_MAX_ADMIN_BYTES)
    if body is None:
        raise ValueError("body too large")
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise TypeError("expected a JSON object")
    return data
