"""``python -m freepik_bg.testing``: run the emulator as a standalone server.

The project's own CLI (``freepik-bg emulator``) reuses :func:`add_arguments` and
:func:`run`, or simply :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from freepik_bg.testing._config import (
    DEFAULT_API_KEY,
    REAL_API_RATE_LIMITS,
    EmulatorConfig,
    single_bucket,
)

__all__ = ["add_arguments", "build_parser", "config_from_options", "main", "run"]


def _latency(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        return (parts[0], parts[0])
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise argparse.ArgumentTypeError("latency is SECONDS or LOW,HIGH")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser`` (for embedding in another CLI)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted API key; repeat for several (default: {DEFAULT_API_KEY})",
    )
    parser.add_argument(
        "--link-ttl", type=float, default=300.0, metavar="S", help="link lifetime in seconds"
    )
    parser.add_argument("--rate", type=float, metavar="R", help="requests/s per key")
    parser.add_argument("--burst", type=float, metavar="B", help="bucket size (default: rate)")
    parser.add_argument(
        "--real-rate-limits",
        action="store_true",
        help="approximate the real API: 50 req/s over 5 s and 10 req/s over 2 min",
    )
    parser.add_argument(
        "--no-retry-after", action="store_true", help="omit Retry-After from 429 answers"
    )
    parser.add_argument(
        "--latency", type=_latency, default=(0.0, 0.0), metavar="S|LOW,HIGH", help="POST delay"
    )
    parser.add_argument(
        "--download-latency",
        type=_latency,
        default=(0.0, 0.0),
        metavar="S|LOW,HIGH",
        help="link download delay",
    )
    parser.add_argument(
        "--fast", action="store_true", help="cache cutouts per source (for benchmarks)"
    )
    parser.add_argument(
        "--invalid-params-style",
        choices=("top", "problem"),
        default="top",
        help="where 400 answers put invalid_params",
    )
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
    """The :class:`EmulatorConfig` described by parsed options."""
    if options.config_json:
        return EmulatorConfig.from_json(json.loads(options.config_json))
    if options.real_rate_limits and options.rate is not None:
        raise ValueError("give either --rate or --real-rate-limits")
    limits = (
        REAL_API_RATE_LIMITS
        if options.real_rate_limits
        else single_bucket(options.rate, options.burst)
    )
    return EmulatorConfig(
        api_keys=tuple(options.api_keys or (DEFAULT_API_KEY,)),
        link_ttl=options.link_ttl,
        rate_limits=limits,
        retry_after_header=not options.no_retry_after,
        latency=options.latency,
        download_latency=options.download_latency,
        fast=options.fast,
        invalid_params_style=options.invalid_params_style,
    )


def run(options: argparse.Namespace) -> int:
    """Serve with parsed ``options`` until SIGINT/SIGTERM; returns the exit status."""
    from freepik_bg.testing._app import EmulatorApp
    from freepik_bg.testing._serving import serve_forever

    logging.basicConfig(
        level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_options(options)
    except (ValueError, TypeError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = EmulatorApp(config, seed=options.seed)
    host = f"[{options.host}]" if ":" in options.host else options.host

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
