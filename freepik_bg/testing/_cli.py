"""``python -m freepik_bg.testing``: run the emulator as a standalone server.

The project's own CLI (``freepik-bg emulator``) reuses `add_arguments` and
`run`, or simply `main`. Every knob's option comes from
`EmulatorConfig`'s fields; only where and how to serve is spelled out here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from freepik_bg.testing._config import EmulatorConfig

__all__ = ["add_arguments", "build_parser", "config_from_options", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (for embedding in another CLI)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    EmulatorConfig.add_arguments(parser)
    parser.add_argument("--seed", type=int, help="seed for random faults and latency")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
    )
    # For Emulator(process=True): the full config as JSON, and a machine-readable banner.
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--announce-json", action="store_true", help=argparse.SUPPRESS)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``python -m freepik_bg.testing``."""
    parser = argparse.ArgumentParser(
        prog=prog or "python -m freepik_bg.testing",
        description=(
            "Run a local emulator of Freepik's remove-background API. "
            "It serves the API, the result links and sample images until Ctrl-C."
        ),
    )
    add_arguments(parser)
    return parser


def config_from_options(options: argparse.Namespace) -> EmulatorConfig:
    """The `EmulatorConfig` described by parsed options."""
    if options.config_json:
        return EmulatorConfig.from_json(json.loads(options.config_json))
    return EmulatorConfig.from_options(options)


def run(options: argparse.Namespace) -> int:
    """Serve with parsed ``options`` until SIGINT/SIGTERM; returns the exit status."""
    from freepik_bg.testing._app import EmulatorApp
    from freepik_bg.testing._serving import serve_forever, url_host

    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_options(options)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = EmulatorApp(config, seed=options.seed)
    host = url_host(options.host)

    def started(port: int) -> None:
        base = f"http://{host}:{port}"
        if options.announce_json:
            info: dict[str, Any] = {"base_url": base, "port": port, "api_key": config.api_keys[0]}
            print(json.dumps(info), flush=True)
            return
        print(f"freepik_bg emulator listening on {base}", flush=True)
        print(f"  API key:  {config.api_keys[0]}")
        print(f"  Endpoint: POST {base}/v1/ai/beta/remove-background")
        print(f"  Samples:  {base}/samples")
        print(f"  Stats:    {base}/_emulator/stats")
        print("Press Ctrl-C to stop.", flush=True)

    import asyncio  # here: `freepik-bg --help` builds this parser and must stay light

    try:
        asyncio.run(
            serve_forever(
                app,
                host=options.host,
                port=options.port,
                log_level=options.log_level,
                on_started=started,
            )
        )
    except OSError as exc:
        print(f"error: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and serve."""
    return run(build_parser().parse_args(argv))
