"""The emulator's knobs: one frozen value, swapped whole when a test changes it.

`EmulatorConfig`'s fields are the single list of knobs. Each declares its
command-line flag and JSON form in its metadata (see `_knobs`), from which the
emulator's CLI, the JSON round trip and ``Emulator(**knobs)`` are derived: adding a
knob means adding a field here, and nothing else.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from freepik_bg.testing._faults import FaultRule, check_rules
from freepik_bg.testing._knobs import (
    UNSET,
    Flag,
    JsonCodec,
    add_knob_arguments,
    dump_json,
    knob,
    knobs_from_options,
    load_json,
)

__all__ = [
    "DEFAULT_API_KEY",
    "MAX_SOURCE_BYTES",
    "REAL_API_RATE_LIMITS",
    "EmulatorConfig",
    "RateLimit",
]

#: The API key an emulator accepts unless told otherwise.
DEFAULT_API_KEY = "test-key"
#: The service's source size limit: 20 MB (taken as 20 MiB).
MAX_SOURCE_BYTES = 20 * 1024 * 1024

LatencyLike = float | tuple[float, float]

# Keywords that stand for a field (see EmulatorConfig.field_changes).
_SHORTHANDS = ("api_key", "extra_api_keys", "rate", "burst")


@attrs.frozen
class RateLimit:
    """A token bucket per API key: ``burst`` requests at once, refilled at ``rate``/s.

    Examples:
        >>> RateLimit(rate=10, burst=20)
        RateLimit(rate=10, burst=20)
    """

    rate: float = attrs.field()
    burst: float = attrs.field()

    @rate.validator
    def _check_rate(self, _attribute: object, value: float) -> None:
        if not value > 0:
            raise ValueError("rate must be positive")

    @burst.validator
    def _check_burst(self, _attribute: object, value: float) -> None:
        if not value >= 1:
            raise ValueError("burst must be at least 1")


#: An approximation of the real API's documented limits as two token buckets:
#: 50 requests/s sustained over 5 s, and 10 requests/s on average over 2 minutes.
REAL_API_RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit(rate=50.0, burst=250.0),
    RateLimit(rate=10.0, burst=1200.0),
)


def single_bucket(rate: float | None, burst: float | None) -> tuple[RateLimit, ...]:
    """The rate limits for the ``rate``/``burst`` shorthand (burst defaults to max(1, rate))."""
    if rate is None:
        if burst is not None:
            raise ValueError("burst needs a rate")
        return ()
    return (RateLimit(rate=float(rate), burst=float(burst if burst is not None else max(1, rate))),)


def _latency(value: LatencyLike | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        low = high = float(value)
    else:
        low, high = (float(v) for v in value)
    if low < 0 or high < low:
        raise ValueError("latency must be seconds >= 0, or a (low, high) range with low <= high")
    return (low, high)


def _latency_arg(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError("latency is SECONDS or LOW,HIGH")
    return (parts[0], parts[-1])


def _keys(value: Iterable[str]) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(value))  # ordered, without duplicates
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError("api_keys must be one or more non-empty strings")
    return keys


def _limits(value: Iterable[RateLimit]) -> tuple[RateLimit, ...]:
    return tuple(value)


def _rules(value: Iterable[FaultRule]) -> tuple[FaultRule, ...]:
    rules = tuple(value)
    check_rules(rules)
    return rules


@attrs.frozen
class _RateLimitFlags:
    """``--rate``/``--burst`` (one bucket) or ``--real-rate-limits``, for ``rate_limits``."""

    def add_to(self, parser: argparse.ArgumentParser, field: attrs.Attribute[Any]) -> None:
        parser.add_argument("--rate", type=float, metavar="R", help="requests/s per key")
        parser.add_argument("--burst", type=float, metavar="B", help="bucket size (default: rate)")
        parser.add_argument(
            "--real-rate-limits",
            action="store_true",
            help="approximate the real API: 50 req/s over 5 s and 10 req/s over 2 min",
        )

    def read(self, options: argparse.Namespace, field: attrs.Attribute[Any]) -> Any:
        rate, burst = getattr(options, "rate", None), getattr(options, "burst", None)
        if getattr(options, "real_rate_limits", False):
            if rate is not None or burst is not None:
                raise ValueError("give either --rate/--burst or --real-rate-limits")
            return REAL_API_RATE_LIMITS
        if rate is None and burst is None:
            return UNSET
        return single_bucket(rate, burst)


_RATE_LIMITS_JSON = JsonCodec(
    dump=lambda limits: [[r.rate, r.burst] for r in limits],
    load=lambda pairs: tuple(RateLimit(*pair) for pair in pairs),
)
_FAULT_RULES_JSON = JsonCodec(
    dump=lambda rules: [r.to_json() for r in rules],
    load=lambda rules: tuple(FaultRule.from_json(r) for r in rules),
)
_LATENCY = "S|LOW,HIGH"


@attrs.frozen
class EmulatorConfig:
    """Every runtime knob of the emulator. Change it with ``Emulator.configure(...)``.

    Attributes:
        api_keys: keys accepted in ``x-freepik-api-key``; the first is ``Emulator.api_key``.
        link_ttl: seconds a returned link stays valid (the real service: 300).
        rate_limits: token buckets applied per API key; empty means unlimited.
        retry_after_header: send ``Retry-After`` on 429 answers (the real API does not
            document it, so a client must also cope without).
        latency: added to each POST that reaches processing: seconds, or a
            (low, high) range drawn uniformly.
        download_latency: the same for link downloads.
        fault_rules: random faults, per endpoint, with a probability each.
        fast: serve a cached cutout per source and read the emulator's own samples
            without an HTTP round trip, so benchmarks measure the client.
        invalid_params_style: "top" puts ``invalid_params`` next to ``message``;
            "problem" wraps them as ``{"message", "problem": {"message", "invalid_params"}}``,
            as the real API sometimes does.
        expired_status: the status of a download of an expired link (404 by default).
        fetch_timeout: seconds allowed to fetch ``image_url``.
        max_source_bytes: the source size limit.
        png_compress_level: zlib level of the high-resolution PNG (1 is fast).

    Examples:
        >>> config = EmulatorConfig(link_ttl=60).with_changes(rate=5)
        >>> config.rate_limits
        (RateLimit(rate=5.0, burst=5.0),)
        >>> EmulatorConfig.from_json(config.to_json()) == config
        True
    """

    api_keys: tuple[str, ...] = knob(
        (DEFAULT_API_KEY,),
        converter=_keys,
        cli=Flag(
            f"accepted API key; repeat for several (default: {DEFAULT_API_KEY})",
            metavar="KEY",
            action="append",
            option="--api-key",
        ),
    )
    link_ttl: float = knob(
        300.0, converter=float, cli=Flag("link lifetime in seconds", metavar="S", parse=float)
    )
    rate_limits: tuple[RateLimit, ...] = knob(
        (), converter=_limits, cli=_RateLimitFlags(), json=_RATE_LIMITS_JSON
    )
    retry_after_header: bool = knob(
        True,
        cli=Flag(
            "omit Retry-After from 429 answers", action="store_false", option="--no-retry-after"
        ),
    )
    latency: tuple[float, float] = knob(
        (0.0, 0.0),
        converter=_latency,
        cli=Flag("POST delay", metavar=_LATENCY, parse=_latency_arg),
    )
    download_latency: tuple[float, float] = knob(
        (0.0, 0.0),
        converter=_latency,
        cli=Flag("link download delay", metavar=_LATENCY, parse=_latency_arg),
    )
    # Rules are objects with probabilities: a Python API, not a command-line one.
    fault_rules: tuple[FaultRule, ...] = knob(
        (), converter=_rules, cli=None, json=_FAULT_RULES_JSON
    )
    fast: bool = knob(
        False,
        cli=Flag("cache cutouts per source (for benchmarks)", action="store_true"),
    )
    invalid_params_style: Literal["top", "problem"] = knob(
        "top",
        cli=Flag("where 400 answers put invalid_params", choices=("top", "problem")),
    )
    expired_status: int = knob(
        404, cli=Flag("status of a download of an expired link", metavar="CODE", parse=int)
    )
    fetch_timeout: float = knob(
        10.0,
        converter=float,
        cli=Flag("seconds allowed to fetch image_url", metavar="S", parse=float),
    )
    max_source_bytes: int = knob(
        MAX_SOURCE_BYTES, cli=Flag("source size limit", metavar="BYTES", parse=int)
    )
    png_compress_level: int = knob(
        1, cli=Flag("zlib level of the high-resolution PNG", metavar="0-9", parse=int)
    )

    @link_ttl.validator
    def _check_ttl(self, _attribute: object, value: float) -> None:
        if value < 0:
            raise ValueError("link_ttl must be >= 0")

    @invalid_params_style.validator
    def _check_style(self, _attribute: object, value: str) -> None:
        if value not in ("top", "problem"):
            raise ValueError('invalid_params_style must be "top" or "problem"')

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """Every keyword `with_changes` (and so ``Emulator(...)``) accepts."""
        return (*attrs.fields_dict(cls), *_SHORTHANDS)

    def with_changes(self, **changes: Any) -> EmulatorConfig:
        """A copy with ``changes``: field names, plus the shorthands below.

        ``api_key`` replaces the accepted keys with that one, ``extra_api_keys`` adds
        keys after the first; ``rate``/``burst`` set a single token bucket (``rate=None``
        removes all limits). Raises TypeError for a keyword that is not a knob.
        """
        return attrs.evolve(self, **self.field_changes(changes))

    def field_changes(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The field values that `with_changes` keywords stand for."""
        unknown = [name for name in changes if name not in self.knob_names()]
        if unknown:
            raise TypeError(
                f"unexpected keyword argument {unknown[0]!r}: not an emulator knob "
                f"(knobs: {', '.join(self.knob_names())})"
            )
        fields = dict(changes)
        if "api_key" in fields or "extra_api_keys" in fields:
            first = fields.pop("api_key", self.api_keys[0])
            fields["api_keys"] = (first, *fields.pop("extra_api_keys", ()))
        if "rate" in fields or "burst" in fields:
            if "rate_limits" in fields:
                raise ValueError("give either rate/burst or rate_limits, not both")
            fields["rate_limits"] = single_bucket(
                fields.pop("rate", None), fields.pop("burst", None)
            )
        return fields

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; `from_json` reverses it."""
        return dump_json(self)

    @classmethod
    def changes_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword changes for `with_changes` from a (partial) `to_json` dict."""
        return load_json(cls, data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Rebuild a config from [`to_json`][freepik_bg.testing.EmulatorConfig.to_json] output."""
        return cls(**cls.changes_from_json(data))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add a command-line option for every knob that has one."""
        add_knob_arguments(parser, cls)

    @classmethod
    def from_options(cls, options: argparse.Namespace) -> EmulatorConfig:
        """The config that parsed command-line options describe (defaults elsewhere)."""
        return cls(**knobs_from_options(options, cls))
